"""Numbers made by different science versions are never paired, reused or resumed together."""
import json
import os
import subprocess
import sys

import duckdb
import numpy as np
import pytest

from mmpkd_core.version import SCIENCE_VERSION, engine_version
from study.gains import load_pairs
from study.stats import PairingError


def test_every_trial_records_its_science_and_package_version(demo_db):
    con = duckdb.connect(str(demo_db), read_only=True)
    rows = con.execute("SELECT DISTINCT science_version, engine_version FROM trials").fetchall()
    con.close()
    assert rows == [(SCIENCE_VERSION, engine_version())] and engine_version() == "0.1.0"


def test_trials_and_baselines_of_different_versions_are_not_paired(demo_db):
    con = duckdb.connect(str(demo_db))
    con.execute("UPDATE trials SET science_version = 0 WHERE is_baseline")
    with pytest.raises(PairingError, match=r"^trial demo/0000 \(raw_cls/pointing_game\) was made by science version "
                                           rf"{SCIENCE_VERSION}, its baseline only by science version 0: numbers of "
                                           "different engines are never paired"):
        load_pairs(con, ["demo"])
    assert con.execute("SELECT count(*) FROM gains_by_image").fetchone()[0] == 0  # the view pairs nothing either
    con.close()
    out = subprocess.run([sys.executable, "-m", "study.cli", "ablate", "demo", "--db", str(demo_db)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: trial demo/0000 (centre/pointing_game) was made by")


def test_a_study_of_another_science_version_is_not_resumed(tmp_path):
    from conftest import config
    from study.load import spec_from_dict
    from study.store import Store

    spec = spec_from_dict({"name": "old", "domain": "synthetic_ddsm", "data": {"n_train": 120, "n_val": 40,
                           "n_test": 40, "image_size": 32}, "search_space": {"alpha": {"type": "float", "low": 0.1,
                                                                                        "high": 0.9}}})
    store = Store(tmp_path / "s.duckdb")
    store.create_study("old", spec.domain, spec.model_dump_json(), spec.spec_hash())
    store.trial_started("old", "0000", 0, config("mlp", 0.5), {"alpha": 0.5}, "h0", "b0")
    store.con.execute("UPDATE trials SET science_version = 0, engine_version = '0.0.9'")
    store.close()
    out = subprocess.run([sys.executable, "-m", "study.cli", "resume", "old", "--db", str(tmp_path / "s.duckdb")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert (out.returncode, out.stderr.strip()) == (1, (
        f"error: study 'old' in {tmp_path / 's.duckdb'} was made by science version 0; this engine (mmpkd-study "
        f"{engine_version()}) is science version {SCIENCE_VERSION}. Start a new study (--name NEW, or --replace), or "
        "install the engine that made it (mmpkd-study 0.0.9)"))
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    assert con.execute("SELECT status FROM trials").fetchall() == [("running",)]  # nothing was touched
    con.close()


@pytest.mark.trains
def test_caches_of_another_version_are_made_again(tmp_path, capsys):
    from mmpkd_core.data import DataConfig
    from mmpkd_core.data.base import PREPARED_COUNT, domain_folder, load_domain
    from mmpkd_core.teachers.base import FIT_COUNT, teacher_outputs

    cfg = DataConfig(n_train=60, n_val=20, n_test=20, image_size=16, seed=3)
    load_domain("synthetic_ddsm", cfg, tmp_path)
    out = teacher_outputs("mlp", "synthetic_ddsm", cfg, 0, tmp_path)
    marker = domain_folder("synthetic_ddsm", cfg, tmp_path) / "science.json"
    assert json.loads(marker.read_text()) == {"science_version": SCIENCE_VERSION, "engine_version": engine_version()}
    generated, fitted = PREPARED_COUNT["generated"], FIT_COUNT["fitted"]
    load_domain("synthetic_ddsm", cfg, tmp_path), teacher_outputs("mlp", "synthetic_ddsm", cfg, 0, tmp_path)
    assert (PREPARED_COUNT["generated"], FIT_COUNT["fitted"]) == (generated, fitted)  # same version: reused
    marker.write_text(json.dumps({"science_version": SCIENCE_VERSION - 1}))
    (path,) = (tmp_path / "teachers").glob("synthetic_ddsm-mlp-*.npz")
    # no version
    np.savez(open(path, "wb"), logits=out.logits, embedding=out.embedding, metrics=json.dumps(out.metrics))
    capsys.readouterr()
    load_domain("synthetic_ddsm", cfg, tmp_path)
    again = teacher_outputs("mlp", "synthetic_ddsm", cfg, 0, tmp_path)
    err = capsys.readouterr().err.splitlines()
    assert (PREPARED_COUNT["generated"], FIT_COUNT["fitted"]) == (generated + 1, fitted + 1)
    assert err[0] == (f"data cache {marker.parent.name} made by science version {SCIENCE_VERSION - 1}; this engine is "
                      f"science version {SCIENCE_VERSION}: generating it again")
    assert err[1] == (f"teacher mlp (seed 0) made by an engine from before science versions were recorded; this "
                      f"engine is science version {SCIENCE_VERSION}: fitting it again")
    np.testing.assert_array_equal(again.logits, out.logits)  # the same code made the same numbers again


@pytest.mark.slow
def test_a_baseline_of_another_version_is_run_again(tmp_path, cache_dir):
    import yaml

    raw = {"name": "a", "domain": "synthetic_ddsm",
           "data": {"n_train": 120, "n_val": 40, "n_test": 40, "image_size": 32},
           "student": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "epochs": 1},
           "search_space": {"alpha": {"type": "float", "low": 0.1, "high": 0.9}},
           "evaluation": {"methods": ["raw_cls"], "metrics": ["pointing_game"]},
           "executor": {"kind": "local", "trials": 1, "scheduler": "fifo"}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**raw, "name": "b"}))
    env = dict(os.environ, MMPKD_CACHE=str(cache_dir))

    def run(spec):
        return subprocess.run([sys.executable, "-m", "study.cli", "run", spec, "--db", "s.duckdb", "--no-report"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)

    assert run("a.yaml").returncode == 0
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute("UPDATE trials SET science_version = 0 WHERE is_baseline")
    con.close()
    out = run("b.yaml")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (f"baseline for seed 0 made by science version 0; this engine is science version {SCIENCE_VERSION}: "
            "running it again") in out.stdout
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    assert con.execute("SELECT study, science_version FROM trials WHERE is_baseline ORDER BY study").fetchall() == [
        ("a", 0), ("b", SCIENCE_VERSION)]
    assert con.execute("SELECT count(*) FROM recipe_gains WHERE study = 'b'").fetchone()[0] == 1
    con.close()
