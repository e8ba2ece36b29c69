"""The driver's Recorder: what a trial that leaves no result still records, and the counts the
progress line shows."""
import duckdb

from mmpkd_core import TrialConfig
from study.recorder import Recorder
from study.store import Store


EPOCH = {"epoch": 1, "loss": 1.0, "ce": 0.5, "kd": 0.4, "feat": 0.0, "lr": 1e-3, "val_auroc": 0.6,
         "val_objective": 0.3, "seconds": 1.0}


def recorder(path, monkeypatch, clock: list, planned: int) -> tuple[Store, Recorder]:
    """A study of ``planned`` trials (3 recipes x 2 seeds) on the driver clock ``clock``."""
    monkeypatch.setattr("study.recorder.time.perf_counter", lambda: clock[0])
    store = Store(path)
    store.create_study(path.stem, "synthetic_ddsm", "{}", "h", planned=planned)
    return store, Recorder(store, path.stem, TrialConfig(domain="synthetic_ddsm"), lambda line: None, total=3,
                           seeds=[0, 1])


def stored(path, columns: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT trial_id, {columns} FROM trials ORDER BY trial_id").fetchall()
    finally:
        con.close()


class Line:
    def __init__(self):
        self.states = []

    def update(self, **state):
        self.states.append(state)


def test_pruned_and_failed_trials_record_their_cost_and_the_line_counts_them(tmp_path, monkeypatch):
    clock = [10.0]
    store, rec = recorder(tmp_path / "r.duckdb", monkeypatch, clock, planned=6)
    rec.progress, rec.mode = Line(), "max"
    rec.start("a", {"alpha": 0.5}, number=0)
    assert rec.progress.states[-1]["running"] == 1
    rec.epoch("a", EPOCH)
    clock[0] = 16.0  # 6 s of the driver's time, two seeds trained in lockstep
    rec.finish("a", "pruned", params={"alpha": 0.5})
    rec.start("b", {"alpha": 0.9}, number=1)
    clock[0] = 20.0
    rec.finish("b", "failed", error="RuntimeError: boom", params={"alpha": 0.9})
    store.close()
    assert stored(tmp_path / "r.duckdb", "status, trial_seconds, epochs_done") == [
        ("0000.s0", "pruned", 3.0, 1), ("0000.s1", "pruned", 3.0, 1),
        ("0001.s0", "failed", 2.0, 0), ("0001.s1", "failed", 2.0, 0)]
    assert rec.progress.states[-1] == {"finished": 2, "total": 3, "running": 0, "baselines": 0, "best": None,
                                       "completed": 0, "pruned": 1, "failed": 1}


def test_slot_utilisation_counts_every_trial_that_ran_over_slots_times_wall(tmp_path):
    from conftest import config

    store = Store(tmp_path / "u.duckdb")
    store.create_study("u", "synthetic_ddsm", "{}", "h")
    for tid, status, seconds in [("baseline-b", "completed", 20.0), ("0000", "completed", 30.0),
                                 ("0001", "pruned", 6.0), ("0002", "failed", 4.0)]:
        base = tid.startswith("baseline")
        store.trial_started("u", tid, None if base else int(tid), config("none" if base else "mlp", 0.5), {}, tid,
                            None if base else "b")
        store.trial_finished("u", tid, status, [], None, None, seconds=seconds)
    store.finish_study("u", "completed", 50.0, slots=2)
    assert store.utilisation("u") == (0.6, 60.0, 2, 50.0)  # 60 s of trials over 2 slots x 50 s
    store.close()


def test_gains_are_written_as_recipes_and_their_baselines_finish(tmp_path, monkeypatch):
    """While a study runs, a recipe's gains are written once it and its baseline have finished; a recipe
    whose baseline is still running waits (at the study's end it would be an error); the refreshes take at
    most 5% of the driver's time."""
    import numpy as np
    import pytest

    from conftest import config, result, scores
    from study.gain_tables import refresh_gains
    from study.stats import PairingError

    rng = np.random.default_rng(0)
    store = Store(tmp_path / "g.duckdb")
    store.create_study("g", "synthetic_ddsm", "{}", "h")
    base = scores(rng, {})
    store.trial_started("g", "baseline-b0", None, config("none", 0.0), {}, "b0", None)
    store.trial_finished("g", "baseline-b0", "completed", [], result(0, base))
    for tid, key in (("0000", "b0"), ("0001", "b1")):  # b1: that baseline has not finished
        store.trial_started("g", tid, int(tid), config("mlp", 0.5), {}, f"h{tid}", key)
        store.trial_finished("g", tid, "completed", [], result(0, scores(rng, {"rollout": 0.2})))
    assert refresh_gains(store, "g", n_boot=50, ready_only=True) == 4  # trial 0000: 2 methods x 2 metrics
    assert store.con.execute("SELECT DISTINCT trial_id FROM gains").fetchall() == [("0000",)]
    with pytest.raises(PairingError, match="0001"):
        refresh_gains(store, "g", n_boot=50)

    clock = [100.0]
    monkeypatch.setattr("study.recorder.time.perf_counter", lambda: clock[0])
    calls = []
    monkeypatch.setattr("study.gain_tables.refresh_gains",
                        lambda *a, **k: (calls.append(k), clock.__setitem__(0, clock[0] + 2)))
    rec = Recorder(store, "g", TrialConfig(domain="synthetic_ddsm"), lambda line: None, total=2, seeds=[0])
    rec.gains = True
    clock[0] = 200.0
    rec.refresh_gains()  # costs 2 s of the clock
    clock[0] = 230.0  # 28 s later: 2 s is 7% of that, over the 5%
    rec.refresh_gains()
    clock[0] = 250.0  # 48 s later: 4%
    rec.refresh_gains()
    assert calls == [{"ready_only": True}, {"ready_only": True}]
    store.close()


def test_a_pruned_trial_costs_its_workers_seconds_retries_included(tmp_path, monkeypatch):
    """A pruned trial's cost is on the clock of a completed trial's ``trial_seconds``: its worker's seconds
    up to its last report (``elapsed_seconds``), the attempts before a retry added; not the driver's wall
    time, which also holds the worker's start-up. A failed trial keeps the driver's wall time."""
    clock = [0.0]
    store, rec = recorder(tmp_path / "w.duckdb", monkeypatch, clock, planned=6)
    rec.start("a", {"alpha": 0.5}, number=0)
    rec.epoch("a", {**EPOCH, "elapsed_seconds": 2.5})
    rec.epoch("a", {**EPOCH, "epoch": 2, "elapsed_seconds": 5.0})
    clock[0] = 9.0  # 9 s of the driver's, 5 of the worker's
    rec.finish("a", "pruned", params={"alpha": 0.5})
    rec.start("b", {"alpha": 0.7}, number=1)
    rec.epoch("b", {**EPOCH, "elapsed_seconds": 1.5})
    rec.retry("b", "the worker died")
    rec.epoch("b", {**EPOCH, "elapsed_seconds": 2.5})
    clock[0] = 20.0
    rec.finish("b", "pruned", params={"alpha": 0.7})
    rec.start("c", {"alpha": 0.9}, number=2)
    rec.epoch("c", {**EPOCH, "elapsed_seconds": 1.0})
    clock[0] = 24.0
    rec.finish("c", "failed", error="RuntimeError: boom", params={"alpha": 0.9})
    store.close()
    assert stored(tmp_path / "w.duckdb", "trial_seconds") == [
        ("0000.s0", 2.5), ("0000.s1", 2.5), ("0001.s0", 2.0), ("0001.s1", 2.0),
        ("0002.s0", 2.0), ("0002.s1", 2.0)]
