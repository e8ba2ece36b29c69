"""Upgrades keep studies resumable: the hashes that pair and resume studies change only on purpose,
and a study killed under an earlier engine is resumed by this one."""
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb

from mmpkd_core import baseline_config
from mmpkd_core.version import SCIENCE_VERSION
from study.trial_config import base_config
from study.load import load_specs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def current_hashes() -> dict:
    out = {}
    for p in sorted(glob.glob(str(ROOT / "search_spaces" / "*.yaml"))):
        for s in load_specs(p):
            b = base_config(s, "/cache")
            out[f"search_spaces/{Path(p).name}:{s.name}"] = {
                "spec_hash": s.spec_hash(), "base": b.config_hash(), "baseline": baseline_config(b).config_hash()}
    return out


def test_shipped_specs_and_their_baselines_keep_their_hashes():
    """spec_hash decides whether a stored study is resumed; a baseline's config_hash pairs every trial
    with its no-distillation baseline across studies. A field added to a spec or a config must leave
    both unchanged where it is not set (LATER_FIELDS, 'hash only when set'); a hash that changes on
    purpose needs a migration and a new line here."""
    assert current_hashes() == json.loads((FIXTURES / "golden_hashes.json").read_text())


def test_a_study_killed_under_the_previous_store_schema_is_resumed(tmp_path, cache_dir, monkeypatch):
    """The fixture: `study run` of killed_before_live_reads.yaml by the engine of commit 716053f
    (before the studies table had planned_trials, slots and slot_utilisation), then the state a kill
    leaves: recipe 2 still 'running', the study 'running' (exported with EXPORT DATABASE; the gallery
    maps dropped to keep it small)."""
    shutil.copytree(FIXTURES / "killed_before_live_reads", tmp_path / "export")
    shutil.copy(FIXTURES / "killed_before_live_reads.yaml", tmp_path / "s.yaml")
    monkeypatch.chdir(tmp_path)  # load.sql names its files relative to the folder it was exported from
    con = duckdb.connect("old.duckdb")
    con.execute("IMPORT DATABASE 'export'")
    assert "planned_trials" not in [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'studies'").fetchall()]
    # its trials were made by science version 1, and only an engine of the version that made a study resumes it
    # (tests/study/test_science_version.py): what is tested here is the store's schema, so they are relabelled
    con.execute("UPDATE trials SET science_version = ?", [SCIENCE_VERSION])
    con.close()
    env = dict(os.environ, MMPKD_CACHE=cache_dir)
    out = subprocess.run([sys.executable, "-m", "study.cli", "run", "s.yaml", "--db", "old.duckdb", "--no-report"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming upgraded: 2 recipes kept, 1 interrupted ones run again, 0 still to sample" in out.stdout
    assert "baselines: 1 reused from the database" in out.stdout
    con = duckdb.connect("old.duckdb", read_only=True)
    rows = con.execute(
        "SELECT trial_id, status, params_json FROM trials WHERE NOT is_baseline ORDER BY trial_id").fetchall()
    study = con.execute("SELECT status, planned_trials, slots FROM studies").fetchone()
    con.close()
    assert [(t, s) for t, s, _ in rows] == [("0000", "completed"), ("0001", "completed"), ("0002", "completed")]
    assert json.loads(rows[2][2]) == {"teacher": "mlp", "alpha": 0.3723675220769994}  # the same sampled recipe
    assert study == ("completed", 3, 1)
    again = subprocess.run([sys.executable, "-m", "study.cli", "resume", "upgraded", "--db", "old.duckdb"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "is already complete" in again.stdout, again.stderr
