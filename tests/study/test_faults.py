"""Faults a cluster has, without a cluster: a trial that Tune retries after its worker or node died
(executor.max_retries), one that fails after its retries, and a node that cannot read the driver's
prepared cache. Tune's callbacks are called here in the order Ray 2.x calls them on a recovery:
on_trial_start, results, on_trial_recover, on_trial_start again (the trial restarts from its first
epoch: no checkpoints), results, then on_trial_complete or on_trial_error; the searcher is told every
result and one completion."""
import math
from types import SimpleNamespace

import cloudpickle
import duckdb
import numpy as np
import pytest

from conftest import EPOCHS, result, scores
from mmpkd_core import DataConfig, StudentConfig, TrialConfig
from study.recorder import Recorder
from study.ray_executor import batched_search, store_callback
from study.store import Store

NODE = "3f1c2a9be07d4c15a0e2f1d3c4b5a6978e9f0a1b2c3d4e5f60718293"
NODE_DIED = ("The actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc\n"
             f"\tpid: 4242\n\tip: 127.0.0.1\nThe actor died because its node has died. Node Id: {NODE}")


def fake_trial(tmp_path, tid: str, number: int) -> SimpleNamespace:
    t = SimpleNamespace(trial_id=tid, config={"teacher": "mlp", "alpha": 0.5, "_recipe": number}, last_result={},
                        num_failures=0, max_failures=1, pickled_error_file=str(tmp_path / f"{tid}.pkl"),
                        error_file=None)
    t.get_error = lambda: None
    return t


def die(trial, text: str = NODE_DIED) -> None:
    """What Tune does when a trial's actor dies: count the failure, write the error beside the trial."""
    trial.num_failures += 1
    with open(trial.pickled_error_file, "wb") as f:
        cloudpickle.dump(RuntimeError(text), f)


def test_a_retried_trial_keeps_one_row_and_only_its_last_attempts_epochs(tmp_path):
    store = Store(tmp_path / "f.duckdb")
    store.create_study("f", "synthetic_ddsm", "{}", "h", planned=2)
    said = []
    rec = Recorder(store, "f", TrialConfig(domain="synthetic_ddsm"), said.append, total=2, seeds=[0])
    cb = store_callback(rec)
    a, b = fake_trial(tmp_path, "a", 0), fake_trial(tmp_path, "b", 1)
    ep1, ep2 = EPOCHS
    for t in (a, b):
        cb.on_trial_start(0, [], t)
        cb.on_trial_result(0, [], t, ep1)
        die(t)
        cb.on_trial_recover(0, [], t)
        cb.on_trial_start(0, [], t)  # the same trial, started again on another node: no second row
    assert [line for line in said if "running it again" in line] == [
        f"trial {n}: its node {NODE[:12]} (127.0.0.1) was lost; retry 1 of 1: running it again from epoch 1"
        for n in ("0000", "0001")]
    assert rec.retries == 2 and rec.epochs == {"0000": [], "0001": []}  # the dead attempts' epochs are gone
    # a: its second attempt completes
    cb.on_trial_result(0, [], a, ep1)
    a.last_result = {**ep2, "results": [result(0, scores(np.random.default_rng(0), {}))]}
    cb.on_trial_result(0, [], a, a.last_result)
    cb.on_trial_complete(0, [], a)
    # b: its node is lost again, past executor.max_retries
    cb.on_trial_result(0, [], b, ep1)
    die(b)
    cb.on_trial_error(0, [], b)
    assert said[-1].endswith(f"FAILED: its node {NODE[:12]} (127.0.0.1) was lost (2 attempts, executor.max_retries 1)")
    store.close()
    con = duckdb.connect(str(tmp_path / "f.duckdb"), read_only=True)
    rows = con.execute("SELECT trial_id, status, epochs_done, error FROM trials ORDER BY trial_id").fetchall()
    epochs = con.execute("SELECT trial_id, epoch FROM epochs ORDER BY ALL").fetchall()
    con.close()
    assert [r[:3] for r in rows] == [("0000", "completed", 2), ("0001", "failed", 1)]
    assert NODE in rows[1][3]  # Ray's own text is kept above the cause line
    assert epochs == [("0000", 1), ("0000", 2), ("0001", 1)]
    assert rec.failed == [f"its node {NODE[:12]} (127.0.0.1) was lost (2 attempts, executor.max_retries 1)"]


def test_a_trial_whose_actor_died_being_created_is_still_recorded(tmp_path):
    """Tune calls on_trial_error (or on_trial_recover) without on_trial_start when the actor never started."""
    store = Store(tmp_path / "g.duckdb")
    store.create_study("g", "synthetic_ddsm", "{}", "h", planned=1)
    rec = Recorder(store, "g", TrialConfig(domain="synthetic_ddsm"), lambda line: None, total=1, seeds=[0])
    t = fake_trial(tmp_path, "c", 0)
    die(t, "The actor is dead because its worker process has died.\n\tpid: 99\n\tip: 10.0.0.7")
    store_callback(rec).on_trial_error(0, [], t)
    assert store.con.execute("SELECT status FROM trials").fetchall() == [("failed",)]
    assert rec.failed == ["its worker process 99 on node 10.0.0.7 died (killed, out of memory or crashed)"]
    store.close()


def test_the_batched_searcher_hears_a_retried_trial_once():
    class Inner:
        metric, mode = "val_objective", "max"

        def __init__(self):
            self.results, self.completed = [], []

        def suggest(self, trial_id):
            return {"alpha": 0.5}

        def on_trial_result(self, trial_id, result):
            self.results.append((trial_id, result["training_iteration"]))

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.completed.append((trial_id, error))

    inner = Inner()
    search = batched_search(inner, batch=1, total=2)
    assert search.suggest("t0") == {"alpha": 0.5, "_recipe": 0}
    for step in (1, 2, 1, 2, 3):  # died after epoch 2; the retry reports from epoch 1 again
        search.on_trial_result("t0", {"training_iteration": step, "val_objective": 0.5})
    search.on_trial_complete("t0", {"val_objective": 0.5})
    search.on_trial_complete("t0", {"val_objective": 0.1}, error=True)  # a second word on the same trial
    assert inner.results == [("t0", 1), ("t0", 2), ("t0", 3)]
    assert search.suggest("t1") == {"alpha": 0.5, "_recipe": 1}
    assert inner.completed == [("t0", False)]  # told once, before the next recipe was sampled


def test_a_node_without_the_prepared_cache_says_which_path_and_how_to_share_it(tmp_path, monkeypatch):
    import ray.tune

    from study.ray_executor import ray_trial

    reports = []
    monkeypatch.setattr(ray.tune, "report", reports.append)
    base = TrialConfig(domain="synthetic_ddsm", data=DataConfig(n_train=100, n_val=40, n_test=40, image_size=32),
                       student=StudentConfig(patch_size=8, embed_dim=32, depth=2, num_heads=2, epochs=1), teacher="mlp")
    absent = tmp_path / "not-mounted-here"
    (tmp_path / "empty").mkdir()
    for cache, path in ((absent, absent), (tmp_path / "empty", tmp_path / "empty" / "data")):
        ray_trial({"alpha": 0.5, "_recipe": 0},
                  base=TrialConfig(**{**base.__dict__, "cache_dir": str(cache)}).to_dict(), seeds=[0])
        report = reports.pop()
        assert math.isnan(report["val_objective"])
        last = report["error"].splitlines()[-1]  # the line the driver prints after FAILED:, and the stored error
        assert last.startswith("mmpkd_core.trial.PreparedCacheMissing: ")
        assert f"cannot read {path}" in last and f"cache folder {cache} " in last
        assert "every node mounts at the same path: study run --cache-dir" in last
    assert not absent.exists()  # nothing made in its place


def test_max_retries_is_hashed_only_when_set():
    from study.load import spec_from_dict

    raw = {"name": "r", "domain": "synthetic_ddsm"}
    plain = spec_from_dict(raw)
    assert plain.executor.max_retries == 1
    assert spec_from_dict({**raw, "executor": {"max_retries": 1}}).spec_hash() == plain.spec_hash()
    assert spec_from_dict({**raw, "executor": {"max_retries": 3}}).spec_hash() != plain.spec_hash()
    from study.errors import SpecError

    with pytest.raises(SpecError, match="executor.max_retries"):
        spec_from_dict({**raw, "executor": {"max_retries": -1}})


def test_a_baseline_that_failed_runs_again_under_its_own_trial_id(tmp_path):
    """The sweep's second baseline pass runs a failed baseline again: its old row and epochs make way."""
    from conftest import config

    store = Store(tmp_path / "b.duckdb")
    store.create_study("b", "synthetic_ddsm", "{}", "h")
    store.trial_started("b", "baseline-x", None, config("none", 0.0), {}, "x", None)
    store.trial_finished("b", "baseline-x", "failed", EPOCHS[:1], None, "its node was lost")
    store.trial_started("b", "baseline-x", None, config("none", 0.0), {}, "x", None)
    assert store.con.execute("SELECT status, error FROM trials").fetchall() == [("running", None)]
    assert store.con.execute("SELECT count(*) FROM epochs").fetchone() == (0,)
    store.close()
