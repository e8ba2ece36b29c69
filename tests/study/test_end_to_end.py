"""A tiny spec through the real CLI: Ray executor and local executor, checked in the database."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

TINY = textwrap.dedent("""\
    name: {name}
    domain: {domain}
    data: {{n_train: 100, n_val: 40, n_test: 40, image_size: 32, seed: 0}}
    student: {{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 1, batch_size: 32}}
    search_space:
      teacher: {{type: categorical, choices: [{teachers}]}}
      alpha: {{type: float, low: 0.1, high: 1.0}}
      temperature: {{type: float, low: 1.0, high: 8.0, log: true}}
      attention_method: {{type: categorical, choices: [raw_cls, rollout]}}
    evaluation: {{methods: [raw_cls, rollout], metrics: [pointing_game, relevance_mass]}}
    executor: {{kind: {kind}, trials: 2, max_concurrent: 2, scheduler: fifo, seed: 0}}
    """)
STUDY = [sys.executable, "-m", "study.cli"]


def run_cli(args, tmp_path, cache_dir):
    env = dict(os.environ, MMPKD_CACHE=cache_dir)
    return subprocess.run(STUDY + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def check_database(db: Path, name: str, n_trials: int, test_rois: int):
    con = duckdb.connect(str(db), read_only=True)
    trials = con.execute("SELECT trial_id, status, teacher, alpha, temperature, attention_method, params_json,"
                         " test_objective FROM trials WHERE study = ? AND NOT is_baseline ORDER BY trial_id",
                         [name]).fetchall()
    assert len(trials) == n_trials
    for tid, status, teacher, alpha, temperature, method, params, objective in trials:
        params = json.loads(params)
        assert status == "completed"
        assert (teacher, alpha, temperature, method) == (params["teacher"], params["alpha"], params["temperature"],
                                                         params["attention_method"])
        assert 0.0 <= objective <= 1.0
    # every trial is paired with a completed no-distillation baseline of the same seed and schedule
    unpaired = con.execute("""
        SELECT count(*) FROM trials t WHERE t.study = ? AND NOT t.is_baseline AND NOT EXISTS (
            SELECT 1 FROM trials b WHERE b.is_baseline AND b.status = 'completed' AND b.config_hash = t.baseline_key
            AND b.seed = t.seed AND b.epochs = t.epochs)""", [name]).fetchone()[0]
    assert unpaired == 0
    assert con.execute("SELECT count(*) FROM epochs e JOIN trials t USING (study, trial_id) WHERE study = ?"
                       " AND NOT t.is_baseline", [name]).fetchone()[0] == n_trials
    loc = con.execute("SELECT l.trial_id, method, metric, count(*), count(DISTINCT image_id) FROM localization l"
                      " JOIN trials t USING (study, trial_id) WHERE study = ? AND NOT t.is_baseline"
                      " GROUP BY ALL ORDER BY ALL", [name]).fetchall()
    assert {m for _, m, *_ in loc} == {"raw_cls", "rollout", "uniform", "centre"}  # chance levels beside the methods
    assert len(loc) == n_trials * 4 * 2
    assert all(n == test_rois and distinct == test_rois for *_, n, distinct in loc)
    # the stored objective is the mean of the stored per-image scores of the sampled method
    mismatch = con.execute("""
        SELECT count(*) FROM trials t WHERE study = ? AND abs(t.test_objective - (
            SELECT avg(value) FROM localization l WHERE l.study = t.study AND l.trial_id = t.trial_id
            AND l.method = t.attention_method AND l.metric = 'pointing_game')) > 1e-9""", [name]).fetchone()[0]
    assert mismatch == 0
    con.close()


@pytest.mark.trains
@pytest.mark.slow
def test_ray_study_end_to_end_through_the_cli(tmp_path, cache_dir):
    (tmp_path / "tiny.yaml").write_text(TINY.format(name="tiny-ray", domain="synthetic_ddsm",
                                                    teachers="lightgbm, mlp", kind="ray"))
    out = run_cli(["run", "tiny.yaml", "--db", "t.duckdb"], tmp_path, cache_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    check_database(tmp_path / "t.duckdb", "tiny-ray", 2, test_rois=40)  # every ddsm image has a mass
    html = (tmp_path / "reports" / "tiny-ray.html").read_text()
    assert "plotly" in html and "tiny-ray" in html and "Attention gallery: synthetic_ddsm" in html
    con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
    # the gallery's maps: each trial's sampled method, every method of the baseline, one per test image
    assert con.execute("SELECT count(*) FROM maps m JOIN trials t USING (study, trial_id) WHERE NOT t.is_baseline"
                       " AND m.method = t.attention_method").fetchone()[0] == 2 * 40
    from mmpkd_core.attention import CHANCE, available

    real = [m for m in available() if m not in CHANCE]
    assert con.execute(
        "SELECT count(DISTINCT method) FROM maps WHERE trial_id LIKE 'baseline-%'").fetchone()[0] == len(real)
    con.close()
    status = run_cli(["status", "--db", "t.duckdb"], tmp_path, cache_dir)
    assert status.returncode == 0 and "tiny-ray" in status.stdout
    again = run_cli(["run", "tiny.yaml", "--db", "t.duckdb", "--no-report"], tmp_path, cache_dir)
    assert again.returncode == 0 and "study tiny-ray is already complete in t.duckdb" in again.stdout
    (tmp_path / "tiny.yaml").write_text((tmp_path / "tiny.yaml").read_text().replace("trials: 2", "trials: 3"))
    changed = run_cli(["run", "tiny.yaml", "--db", "t.duckdb"], tmp_path, cache_dir)
    assert changed.returncode == 1
    assert changed.stderr.strip() == ("error: Study 'tiny-ray' exists in t.duckdb with a different spec. "
                                      "Use --name NEW, --replace, or --db OTHER.duckdb.")


def test_local_executor_text_domain_end_to_end(tmp_path, cache_dir):
    (tmp_path / "tiny.yaml").write_text(TINY.format(name="tiny-cxr", domain="synthetic_cxr",
                                                    teachers="bert_scratch", kind="local"))
    out = run_cli(["run", "tiny.yaml", "--db", "t.duckdb", "--no-report"], tmp_path, cache_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
    rois = con.execute("SELECT count(DISTINCT image_id) FROM localization").fetchone()[0]
    assert con.execute("SELECT count(*) FROM trials WHERE is_baseline").fetchone()[0] == 1
    con.close()
    assert 10 < rois < 40  # only the test images with a finding are scored
    check_database(tmp_path / "t.duckdb", "tiny-cxr", 2, test_rois=rois)


def test_bad_spec_stops_before_anything_is_written(tmp_path, cache_dir):
    (tmp_path / "bad.yaml").write_text(TINY.format(name="bad", domain="synthetic_ddsm", teachers="bert_scratch",
                                                   kind="local"))
    out = run_cli(["run", "bad.yaml", "--db", "t.duckdb"], tmp_path, cache_dir)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "error: bad.yaml: search_space.teacher.choices[0]: teacher 'bert_scratch' reads text but domain "
        "'synthetic_ddsm' has tabular; use one of: image_self, label_smoothing, lightgbm, matched_lightgbm, "
        "matched_mlp, mlp")
    assert out.stdout == ""
    assert not (tmp_path / "t.duckdb").exists()


FAILING = textwrap.dedent("""\
    name: failing
    domain: synthetic_ddsm
    data: {{n_train: 100, n_val: 40, n_test: 40, image_size: 32, seed: 0}}
    student: {{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 1, batch_size: 32}}
    recipe: {{teacher: mlp, alpha: 0.5}}
    baselines: false
    search_space:
      lr: {{type: categorical, choices: [1.0e-3, 1.0e+12]}}   # a huge rate gives a non-finite loss
      num_heads: {{type: categorical, choices: [2, 3]}}       # 3 does not divide width 32: the trial raises
    executor: {{kind: {kind}, trials: 6, max_concurrent: 2, scheduler: fifo, seed: 5{extra}}}
    """)


@pytest.mark.trains
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "ray"])
def test_failing_trials_are_recorded_and_the_rest_finish(tmp_path, cache_dir, kind):
    (tmp_path / "f.yaml").write_text(FAILING.format(kind=kind, extra=""))
    out = run_cli(["run", "f.yaml", "--db", "t.duckdb", "--no-report"], tmp_path, cache_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
    rows = con.execute("SELECT status, params_json, error FROM trials ORDER BY trial_id").fetchall()
    con.close()
    assert len(rows) == 6
    for status, params, error in rows:
        p = json.loads(params)
        expected = "completed" if p["lr"] < 1 and p["num_heads"] == 2 else "failed"
        assert status == expected, (p, error)
        if p["num_heads"] == 3:
            assert "num_heads" in error or "divisible" in error, error
        elif p["lr"] > 1:
            assert "non-finite training loss" in error, error
    assert [r[0] for r in rows].count("completed") == 3  # the seeded sampler's sequence (same for both executors)


def test_max_failures_stops_the_study_with_a_summary(tmp_path, cache_dir):
    (tmp_path / "f.yaml").write_text(FAILING.format(kind="local", extra=", max_failures: 0"))
    out = run_cli(["run", "f.yaml", "--db", "t.duckdb", "--no-report"], tmp_path, cache_dir)
    assert out.returncode == 1
    assert out.stderr.startswith("error: study 'failing' stopped: 1 trials failed (executor.max_failures 0); "
                                 "last error:")
    con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
    assert con.execute("SELECT status FROM studies").fetchone() == ("stopped",)
    con.close()


def test_a_second_study_on_the_same_domain_and_seed_runs_no_new_baseline(tmp_path, cache_dir):
    spec = TINY.format(name="first", domain="synthetic_ddsm", teachers="lightgbm, mlp", kind="local")
    (tmp_path / "a.yaml").write_text(spec)
    (tmp_path / "b.yaml").write_text(spec.replace("name: first", "name: second").replace("trials: 2", "trials: 1"))
    for f in ("a.yaml", "b.yaml"):
        out = run_cli(["run", f, "--db", "t.duckdb", "--no-report"], tmp_path, cache_dir)
        assert out.returncode == 0, out.stderr[-2000:]
    assert "baselines: 1 reused from the database" in out.stdout
    con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
    assert con.execute(
        "SELECT study, count(*) FROM trials WHERE is_baseline GROUP BY study").fetchall() == [("first", 1)]
    # the second study's gains are paired with the first study's baseline
    assert con.execute("SELECT count(*) FROM gains WHERE study = 'second'").fetchone()[0] == 2 * 2
    con.close()
