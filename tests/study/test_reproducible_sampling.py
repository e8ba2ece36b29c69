"""The sequence of sampled recipes must not depend on concurrency or completion order."""
import random

from ray.tune.search import Searcher

from study.ray_executor import searcher
from study.load import spec_from_dict

SPEC = {"name": "r", "domain": "synthetic_ddsm",
        "search_space": {"teacher": {"type": "categorical", "choices": ["lightgbm", "mlp"]},
                         "alpha": {"type": "float", "low": 0.0, "high": 1.0},
                         "temperature": {"type": "float", "low": 1.0, "high": 8.0, "log": True}},
        "executor": {"trials": 12, "sample_batch": 3, "seed": 5}}


def simulate(concurrency: int, shuffle_seed: int, first: int | None = None, lag: int = 0) -> list[dict]:
    """Drive the searcher as Tune does: at most ``concurrency`` running, completing in random order.
    ``first``: the size of the first batch, in place of the engine's own choice."""
    search = searcher(with_lag(lag))
    if first is not None:
        search.first = first
    rng = random.Random(shuffle_seed)
    sampled, running, n = [], [], 0
    while len(sampled) < 12 or running:
        while len(running) < concurrency and len(sampled) < 12:
            cfg = search.suggest(f"t{n}")
            if cfg is None:  # the batch is not finished yet
                break
            sampled.append({k: v for k, v in cfg.items() if k != "_recipe"})
            running.append((f"t{n}", cfg))
            n += 1
        done = running.pop(rng.randrange(len(running)))
        objective = done[1]["alpha"] * (2 if done[1]["teacher"] == "mlp" else 1)  # deterministic result
        search.on_trial_complete(done[0], {"val_objective": objective, "training_iteration": 1})
    return sampled


def with_lag(lag: int, **executor):
    return spec_from_dict({**SPEC, "executor": {**SPEC["executor"], "sample_lag": lag, **executor}})


def test_same_recipes_whatever_the_concurrency_and_completion_order():
    reference = simulate(concurrency=1, shuffle_seed=0)
    assert len(reference) == 12 and len({round(r["alpha"], 12) for r in reference}) == 12
    for concurrency, order in [(2, 1), (3, 2), (3, 3)]:
        assert simulate(concurrency, order) == reference


def test_tpe_start_up_trials_are_handed_out_at_once_and_sample_the_same_recipes():
    """TPE's start-up trials are drawn at random whatever the results, so the engine hands out all of them
    (6 of 12 trials, rounded up to whole batches of 3) before any result is told: the same sequence as
    batches of 3 each waiting for the one before, without the slots idling at each batch's end."""
    search = searcher(spec_from_dict(SPEC))
    assert search.first == 6
    handed = [search.suggest(f"t{i}") for i in range(7)]
    assert all(c is not None for c in handed[:6]) and handed[6] is None  # the 7th waits for the first 6
    for concurrency, order in [(1, 0), (3, 1), (6, 2)]:
        assert simulate(concurrency, order) == simulate(concurrency, order, first=3)


def test_baselines_take_the_slots_no_recipe_can_take():
    """The matched baselines run in the recipes' pool: a baseline is handed out when the sampler waits for a
    batch's results, a recipe that samples the schedule queues a baseline of its own, and the searcher says
    it has finished once every recipe and baseline is out."""
    from mmpkd_core import DataConfig, StudentConfig, TrialConfig, baseline_config
    from study.baselines import BaselineQueue

    base = TrialConfig(domain="synthetic_ddsm", data=DataConfig(), student=StudentConfig(epochs=2), teacher="mlp",
                       seed=0)
    own = [baseline_config(base.with_params({"seed": s})) for s in (0, 1)]
    spec = spec_from_dict({**SPEC, "search_space": {**SPEC["search_space"],
                                                     "lr": {"type": "categorical", "choices": [0.001, 0.01]}},
                           "executor": {"trials": 4, "sample_batch": 2, "seed": 0}, "seeds": [0, 1]})
    queue = BaselineQueue(base, [0, 1], own[:1], stored={own[1].config_hash()})  # seed 1's is stored already
    search = searcher(spec, baselines=queue)
    assert search.first == 2  # TPE's 2 start-up trials of 4
    out = [search.suggest(f"t{i}") for i in range(3)]
    assert [("_recipe" in c) for c in out] == [True, True, False]
    assert out[2]["_baseline"]["seed"] == 0 and out[2]["_baseline"]["alpha"] == 0.0  # the spec's own, seed 0
    # each recipe's lr differs from the base schedule unless it is the base's: a baseline per (lr, seed) not stored
    wanted = {baseline_config(base.with_params({"lr": c["lr"], "seed": s})).config_hash()
              for c in out[:2] for s in (0, 1)} - {own[0].config_hash(), own[1].config_hash()}
    assert {b.config_hash() for b in queue.todo} == wanted
    extra = [search.suggest(f"b{i}") for i in range(len(wanted))]
    assert all("_baseline" in c for c in extra) and search.suggest("x") is None  # waits for the recipes' results
    for i in range(2):
        search.on_trial_complete(f"t{i}", {"val_objective": 0.5})
    for tid in ["t2", *(f"b{i}" for i in range(len(wanted)))]:  # baselines are never told to the sampler
        search.on_trial_complete(tid, {"val_objective": 0.1})
    later = [search.suggest(f"u{i}") for i in range(2)]
    assert [c["_recipe"] for c in later] == [2, 3]
    while queue.todo:
        assert "_baseline" in search.suggest("more")
    assert search.suggest("end") == Searcher.FINISHED


def test_with_a_lag_the_next_batch_is_sampled_while_the_last_one_runs():
    """sample_lag 1: batch k is sampled once the batches up to k - 2 have finished, from their results only;
    the sequence is again the same whatever the concurrency and completion order, and after TPE's start-up
    draws it differs from lag 0's (it learns from fewer results)."""
    for lag, waits_for in [(0, 6), (1, 3)]:  # recipe 6 (batch 2 of 3) waits for 6 results, or for 3
        search = searcher(with_lag(lag))
        handed = [search.suggest(f"t{i}") for i in range(6)]
        assert all(c is not None for c in handed)
        for i in range(waits_for - 1):
            search.on_trial_complete(f"t{i}", {"val_objective": 0.1})
        assert search.suggest("early") is None
        search.on_trial_complete(f"t{waits_for - 1}", {"val_objective": 0.1})
        assert search.suggest("t6")["_recipe"] == 6
        assert search.told == waits_for
    reference = simulate(concurrency=1, shuffle_seed=0, lag=1)
    for concurrency, order in [(2, 1), (3, 2), (6, 3)]:
        assert simulate(concurrency, order, lag=1) == reference
    lag0 = simulate(concurrency=1, shuffle_seed=0)
    assert reference[:6] == lag0[:6] and reference[6:] != lag0[6:]


def test_the_local_executor_samples_the_searchers_sequence_with_a_lag(monkeypatch):
    """The local executor asks and tells its sampler in the same batches as the Ray searcher, lag included:
    the same 12 recipes (trials stubbed with the simulation's deterministic result)."""
    from types import SimpleNamespace

    import mmpkd_core
    from mmpkd_core import TrialConfig
    from study.local_executor import run_local

    def fake_run_recipe(cfg, seeds, report):
        value = cfg.alpha * (2 if cfg.teacher == "mlp" else 1)
        return [SimpleNamespace(val_objective=value, payload=lambda: {})]

    class Record:
        def __init__(self):
            self.params, self.failed = [], []

        def start(self, key, params, number=None):
            self.params.append(params)

        def finish(self, key, status, results=None, error=None, params=None):
            assert status == "completed", error

    monkeypatch.setattr(mmpkd_core, "run_recipe", fake_run_recipe)
    for lag in (0, 1):
        spec = with_lag(lag, kind="local", scheduler="fifo")
        rec = Record()
        run_local(spec, TrialConfig(domain="synthetic_ddsm"), rec)
        assert rec.params == simulate(concurrency=2, shuffle_seed=4, lag=lag)


def test_a_resumed_searcher_with_a_lag_replays_the_same_sequence():
    """Resuming (``finished``: the stored recipes) re-asks the sampler as the run did, lag included: an
    interrupted recipe of the last batch but one is handed out again first, and the recipes still to
    sample are those the uninterrupted run sampled."""
    reference = simulate(concurrency=1, shuffle_seed=0, lag=1)

    def value(p):
        return p["alpha"] * (2 if p["teacher"] == "mlp" else 1)

    finished = {n: {"params": reference[n], "status": "completed", "value": value(reference[n])}
                for n in range(9) if n != 7}  # recipe 7 was running when the study was killed
    search = searcher(with_lag(1), finished=finished)
    again = search.suggest("r7")
    assert again["_recipe"] == 7 and {k: v for k, v in again.items() if k != "_recipe"} == reference[7]
    rest = [search.suggest(f"n{i}") for i in range(3)]  # batch 3 needs batches 0-1 only: 7 may still run
    assert [{k: v for k, v in c.items() if k != "_recipe"} for c in rest] == reference[9:]
