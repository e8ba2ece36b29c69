import subprocess
import sys

import pytest

from mmpkd_core.version import SCIENCE_VERSION
from study.errors import StoreError
from study.store import Store, connect

CONFIG = {"domain": "synthetic_ddsm", "teacher": "mlp", "temperature": 2.0, "alpha": 0.5, "beta": 0.0,
          "attention_method": "rollout", "seed": 0, "student": {"lr": 1e-3, "weight_decay": 0.05, "epochs": 2}}
RESULT = {"val_objective": 0.5, "test_objective": 0.25, "val_auroc": 0.9, "test_auroc": 0.8, "trial_seconds": 1.5,
          "teacher_metrics": {"test_auroc": 1.0}, "image_ids": ["a", "b", "c"],
          "scores": {"rollout|pointing_game": [1.0, 0.0, None], "rollout|relevance_mass": [0.5, 0.25, 0.75]}}
EPOCHS = [{"epoch": e, "loss": 1.0 / e, "ce": 0.5, "kd": 0.4, "feat": 0.0, "lr": 1e-3, "val_auroc": 0.8,
           "val_objective": 0.5, "seconds": 0.1} for e in (1, 2)]


def test_a_finished_trial_lands_with_its_epochs_and_per_image_scores(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.create_study("s", "synthetic_ddsm", "{}", "h")
    store.trial_started("s", "0000", 0, CONFIG, {"alpha": 0.5}, "abc", "base1")
    store.trial_finished("s", "0000", "completed", EPOCHS, RESULT)
    con = store.con
    rows = con.execute("SELECT status, teacher, alpha, test_objective, epochs_done, is_baseline FROM trials").fetchall()
    assert rows == [("completed", "mlp", 0.5, 0.25, 2, False)]
    assert con.execute("SELECT epoch, loss FROM epochs ORDER BY epoch").fetchall() == [(1, 1.0), (2, 0.5)]
    rows = con.execute("SELECT method, metric, image_id, value FROM localization ORDER BY metric, image_id").fetchall()
    assert rows == [("rollout", "pointing_game", "a", 1.0), ("rollout", "pointing_game", "b", 0.0),
                    ("rollout", "pointing_game", "c", None), ("rollout", "relevance_mass", "a", 0.5),
                    ("rollout", "relevance_mass", "b", 0.25), ("rollout", "relevance_mass", "c", 0.75)]
    agg = con.execute("SELECT metric, mean, n, n_nan FROM evaluation ORDER BY metric").fetchall()
    assert agg == [("pointing_game", 0.5, 3, 1), ("relevance_mass", 0.5, 3, 0)]


def test_a_failure_inside_the_write_leaves_no_half_trial(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.trial_started("s", "0000", 0, CONFIG, {}, "abc", "base1")
    bad = dict(RESULT, scores={"rollout|pointing_game": [1.0]})  # length mismatch -> error mid-write
    with pytest.raises(Exception):
        store.trial_finished("s", "0000", "completed", EPOCHS, bad)
    assert store.con.execute("SELECT status FROM trials").fetchall() == [("running",)]
    assert store.con.execute("SELECT count(*) FROM epochs").fetchone() == (0,)


def test_baseline_trials_are_marked(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.trial_started("s", "b", None, dict(CONFIG, alpha=0.0, beta=0.0), {}, "abc", None)
    assert store.con.execute("SELECT is_baseline, teacher FROM trials").fetchone() == (True, None)
    assert store.completed_baselines(SCIENCE_VERSION) == {}
    store.trial_finished("s", "b", "completed", EPOCHS, RESULT)
    assert store.completed_baselines(SCIENCE_VERSION) == {"abc": {SCIENCE_VERSION}}


def test_resume_drops_baselines_that_did_not_complete(tmp_path):
    """A baseline killed with its Ray worker is stored as failed; resuming runs it again under the
    same trial id, so its row must go (it once stopped a resume with a duplicate key)."""
    store = Store(tmp_path / "s.duckdb")
    store.create_study("s", "synthetic_ddsm", "{}", "h")
    base = dict(CONFIG, alpha=0.0, beta=0.0)
    for key, status in (("baseline-ok", "completed"), ("baseline-killed", "failed")):
        store.trial_started("s", key, None, base, {}, key, None)
        store.trial_finished("s", key, status, EPOCHS, RESULT if status == "completed" else None,
                             error=None if status == "completed" else "worker died")
    store.trial_started("s", "0000", 0, CONFIG, {"alpha": 0.5}, "t0", "baseline-ok")
    store.trial_finished("s", "0000", "completed", EPOCHS, RESULT)
    finished, killed = store.resume_state("s")
    assert set(finished) == {0} and killed == {}
    kept = store.con.execute("SELECT trial_id FROM trials ORDER BY trial_id").fetchall()
    assert kept == [("0000",), ("baseline-ok",)]
    store.trial_started("s", "baseline-killed", None, base, {}, "baseline-killed", None)  # no duplicate key


def test_a_second_writer_gets_a_clear_message(tmp_path):
    path = tmp_path / "s.duckdb"
    store = Store(path)
    store.con  # hold the write lock in this process
    code = f"from study.store import connect\ntry:\n connect({str(path)!r})\nexcept Exception as e:\n print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == (f"database '{path}' is in use by another writing process (a study still running?); "
                   "wait for it to finish or use --db OTHER.duckdb")


def test_read_only_open_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(StoreError, match="not found; run a study first"):
        connect(str(tmp_path / "none.duckdb"), read_only=True)


def test_gains_by_image_pairs_each_trial_image_with_its_own_baseline(tmp_path):
    """Two baselines (two config hashes), trials matched to each, a baseline that lacks one image, a trial
    whose baseline never completed and a failed trial: the view's rows, value by value."""
    store = Store(tmp_path / "s.duckdb")
    store.create_study("s", "synthetic_ddsm", "{}", "h")
    base = dict(CONFIG, alpha=0.0, beta=0.0)

    def scores(pg, rm):
        return {"rollout|pointing_game": pg, "rollout|relevance_mass": rm}

    rows = [  # trial id, number, config hash, baseline key, status, image ids, scores
        ("bA", None, "A", None, "completed", ["a", "b", "c"], scores([1.0, 0.0, 1.0], [0.5, 0.25, 0.75])),
        ("bB", None, "B", None, "completed", ["a", "b"], scores([0.0, 0.0], [0.125, 0.0])),  # no image c
        ("bC", None, "C", None, "failed", None, None),
        ("0000", 0, "t0", "A", "completed", ["a", "b", "c"], scores([1.0, 1.0, 0.0], [1.0, 0.5, 0.25])),
        ("0001", 1, "t1", "B", "completed", ["a", "b", "c"], scores([1.0, 0.0, 1.0], [0.25, 0.5, 1.0])),
        ("0002", 2, "t2", "C", "completed", ["a"], scores([1.0], [1.0])),  # its baseline failed: no pairs
        ("0003", 3, "t3", "A", "failed", None, None),
    ]
    for tid, number, h, key, status, ids, sc in rows:
        store.trial_started("s", tid, number, base if key is None else CONFIG, {}, h, key)
        store.trial_finished("s", tid, status, EPOCHS, dict(RESULT, image_ids=ids, scores=sc) if ids else None)
    got = store.con.execute("SELECT trial_id, metric, image_id, value, baseline_value, gain, baseline_value_present "
                            "FROM gains_by_image ORDER BY ALL").fetchall()
    assert got == [
        ("0000", "pointing_game", "a", 1.0, 1.0, 0.0, True), ("0000", "pointing_game", "b", 1.0, 0.0, 1.0, True),
        ("0000", "pointing_game", "c", 0.0, 1.0, -1.0, True),
        ("0000", "relevance_mass", "a", 1.0, 0.5, 0.5, True), ("0000", "relevance_mass", "b", 0.5, 0.25, 0.25, True),
        ("0000", "relevance_mass", "c", 0.25, 0.75, -0.5, True),
        ("0001", "pointing_game", "a", 1.0, 0.0, 1.0, True), ("0001", "pointing_game", "b", 0.0, 0.0, 0.0, True),
        ("0001", "pointing_game", "c", 1.0, None, None, False),
        ("0001", "relevance_mass", "a", 0.25, 0.125, 0.125, True), ("0001", "relevance_mass", "b", 0.5, 0.0, 0.5, True),
        ("0001", "relevance_mass", "c", 1.0, None, None, False)]
    assert store.con.execute("SELECT DISTINCT teacher, sampled_method, alpha FROM gains_by_image").fetchall() == [
        ("mlp", "rollout", 0.5)]


def test_scores_and_maps_are_written_column_by_column_with_the_same_rows(tmp_path):
    """The Arrow write path: a NaN score and a missing one are both NULL; a metric with every score
    missing has a NULL mean; each method's maps belong to the first image ids in order, stored as float32."""
    store = Store(tmp_path / "s.duckdb")
    store.create_study("s", "synthetic_ddsm", "{}", "h")
    store.trial_started("s", "0000", 0, CONFIG, {"alpha": 0.5}, "abc", "base1")
    third = 1 / 3  # float32 rounds it: 0.3333333432674408
    result = dict(RESULT, scores={"rollout|pointing_game": [1.0, float("nan"), None],
                                  "rollout|relevance_mass": [None, None, None],
                                  "raw_cls|pointing_game": [0.0, 1.0, 1.0]},
                  maps={"rollout": [[0.5, third, 0.0, 1.0]], "raw_cls": [[1.0] * 4, [0.25] * 4, [0.0] * 4, [9.0] * 4]},
                  grid=[2, 2])
    store.trial_finished("s", "0000", "completed", EPOCHS, result)
    con = store.con
    assert con.execute("SELECT method, metric, image_id, value FROM localization WHERE value IS NULL "
                       "ORDER BY ALL").fetchall() == [
        ("rollout", "pointing_game", "b", None), ("rollout", "pointing_game", "c", None),
        ("rollout", "relevance_mass", "a", None), ("rollout", "relevance_mass", "b", None),
        ("rollout", "relevance_mass", "c", None)]
    assert con.execute("SELECT method, metric, mean, n, n_nan FROM evaluation ORDER BY ALL").fetchall() == [
        ("raw_cls", "pointing_game", 2 / 3, 3, 0), ("rollout", "pointing_game", 1.0, 3, 2),
        ("rollout", "relevance_mass", None, 3, 3)]
    maps = con.execute("SELECT method, image_id, h, w, map FROM maps ORDER BY method, image_id").fetchall()
    assert maps == [("raw_cls", "a", 2, 2, [1.0] * 4), ("raw_cls", "b", 2, 2, [0.25] * 4),
                    ("raw_cls", "c", 2, 2, [0.0] * 4), ("rollout", "a", 2, 2, [0.5, 0.3333333432674408, 0.0, 1.0])]
