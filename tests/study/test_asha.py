"""One ASHA rule for both executors: the local executor's Optuna pruner stops a trial exactly where Ray
Tune's ASHAScheduler (the Ray executor's) stops it, report by report, for the same reports in the same
order, whatever the order in which trials interleave."""
import math
import random
import warnings
from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from study.asha import REDUCTION_FACTOR, AshaPruner, rung_value, rungs


def test_rungs_are_ray_s():
    assert rungs(4, 20) == [4, 12]
    assert rungs(2, 20) == [2, 6, 18]
    assert rungs(1, 9) == [1, 3, 9]
    assert rungs(3, 3) == [3]
    for grace, max_t in [(4, 20), (2, 20), (1, 9), (1, 3), (2, 7), (5, 100)]:
        ray_rungs = ASHAScheduler(time_attr="t", metric="v", mode="max", max_t=max_t, grace_period=grace,
                                  reduction_factor=REDUCTION_FACTOR)._brackets[0]._rungs
        assert rungs(grace, max_t) == sorted(m for m, _ in ray_rungs)


def test_rung_value_is_the_first_report_at_or_past_the_rung():
    assert rung_value({1: 0.1, 2: 0.2, 4: 0.4, 5: 0.5}, 3) == 0.4
    assert rung_value({1: 0.1, 2: 0.2}, 3) is None
    assert rung_value({1: 0.1, 13: 0.9}, 4, above=12) is None  # that report was judged at rung 12


def pruner_study(mode="max", grace=2, max_t=10):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(direction="maximize" if mode == "max" else "minimize",
                               pruner=AshaPruner(grace, max_t, mode))


def run_curve(study, curve) -> int:
    """Reports the curve (epoch 1, 2, ...) until the pruner stops it; the epoch it stopped at (or len)."""
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if epoch < len(curve) and trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, curve[-1])
    return len(curve)


def test_hand_built_cutoff():
    """Rungs at epochs 2 and 6 (grace 2, max 10), cutoffs the 2/3 quantile of the values recorded there."""
    study = pruner_study()
    assert run_curve(study, [0.0, 0.1] + [0.1] * 8) == 10  # first at every rung: goes on
    assert run_curve(study, [0.0, 0.5] + [0.05] * 8) == 6  # rung 2: 0.5 >= 0.1; rung 6: 0.05 < 0.1
    # rung 2 holds 0.1 and 0.5: cutoff 0.1 + (2/3)(0.4) = 0.3667
    assert run_curve(study, [0.0, 0.36] + [1.0] * 8) == 2
    # rung 2 holds 0.1, 0.36 (recorded, then stopped) and 0.5: cutoff 0.36 + (1/3)(0.14) = 0.4067
    assert run_curve(study, [0.0, 0.4] + [1.0] * 8) == 2
    assert run_curve(study, [0.0, 0.41, 0.0, 0.0, 0.0, 0.08] + [1.0] * 4) == 6  # rung 6: 0.05 + (2/3)(0.05) = 0.0833
    # rung 6 holds 0.1, 0.05 and 0.08: cutoff 0.08 + (1/3)(0.02) = 0.0867
    assert run_curve(study, [0.0, 0.5, 0.0, 0.0, 0.0, 0.09] + [1.0] * 4) == 10


def test_ties_and_nan_go_on():
    study = pruner_study()
    assert run_curve(study, [0.0] * 10) == 10
    assert run_curve(study, [0.0] * 10) == 10  # 0 is not below a cutoff of 0
    assert run_curve(study, [0.0, float("nan")] + [0.0] * 8) == 10  # NaN is below nothing
    assert run_curve(study, [0.0, -1.0] + [0.0] * 8) == 2


def test_minimise_mirrors_maximise():
    lo, hi = pruner_study("min"), pruner_study("max")
    curves = [[0.0, v] + [v] * 8 for v in (0.1, 0.5, 0.36, 0.37, 0.2)]
    assert [run_curve(lo, [-x for x in c]) for c in curves] == [run_curve(hi, c) for c in curves]


def ray_decisions(schedule, curves, mode, grace, max_t) -> dict[int, int]:
    sched = ASHAScheduler(time_attr="training_iteration", metric="v", mode=mode, max_t=max_t, grace_period=grace,
                          reduction_factor=REDUCTION_FACTOR)
    trials = {i: SimpleNamespace(trial_id=f"t{i}") for i in range(len(curves))}
    stopped: dict[int, int] = {}
    pos = dict.fromkeys(trials, 0)
    for i in schedule:
        if i in stopped:
            continue
        if pos[i] == 0:
            sched.on_trial_add(None, trials[i])
        epoch, value = pos[i] + 1, curves[i][pos[i]]
        pos[i] = epoch
        result = {"training_iteration": epoch, "v": value}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            action = sched.on_trial_result(None, trials[i], result)
            if action == TrialScheduler.STOP:  # a rung, or the last epoch (completed)
                stopped[i] = epoch
                sched.on_trial_complete(None, trials[i], result)
    return stopped


def pruner_decisions(schedule, curves, mode, grace, max_t) -> dict[int, int]:
    study = pruner_study(mode, grace, max_t)
    live: dict[int, optuna.trial.Trial] = {}
    stopped: dict[int, int] = {}
    pos = dict.fromkeys(range(len(curves)), 0)
    for i in schedule:
        if i in stopped:
            continue
        if pos[i] == 0:
            live[i] = study.ask()
        epoch, value = pos[i] + 1, curves[i][pos[i]]
        pos[i] = epoch
        live[i].report(value, epoch)
        if epoch >= max_t:
            stopped[i] = epoch
            study.tell(live[i], value if value == value else None,
                       state=optuna.trial.TrialState.COMPLETE if value == value else optuna.trial.TrialState.FAIL)
        elif live[i].should_prune():
            stopped[i] = epoch
            study.tell(live[i], state=optuna.trial.TrialState.PRUNED)
    return stopped


def scenario(seed: int):
    """Random curves (some NaN, many ties), reported in a random interleaving of up to 4 trials at once."""
    rng = random.Random(seed)
    mode = rng.choice(["max", "min"])
    grace, max_t = rng.choice([(1, 9), (2, 20), (4, 20), (1, 5), (3, 10)])
    n = rng.randint(3, 12)
    curves = [[math.nan if rng.random() < 0.05 else round(rng.random(), 1) for _ in range(max_t)] for _ in range(n)]
    at_once = rng.randint(1, 4)
    schedule, running, queue = [], [], list(range(n))
    left = dict.fromkeys(range(n), max_t)
    while queue or running:
        while queue and len(running) < at_once:
            running.append(queue.pop(0))
        i = rng.choice(running)
        schedule.append(i)  # a trial stopped meanwhile skips its later turns, under both
        left[i] -= 1
        if left[i] == 0:
            running.remove(i)
    return schedule, curves, mode, grace, max_t


@pytest.mark.parametrize("seed", range(40))
def test_the_pruner_stops_where_ray_s_asha_stops(seed):
    ray = ray_decisions(*scenario(seed))
    assert len(ray) == len(scenario(seed)[1])
    assert pruner_decisions(*scenario(seed)) == ray


def test_the_scenarios_stop_trials_early_and_interleave():
    early = interleaved = 0
    for seed in range(40):
        schedule, curves, mode, grace, max_t = scenario(seed)
        early += any(epoch < max_t for epoch in ray_decisions(schedule, curves, mode, grace, max_t).values())
        interleaved += any(a != b for a, b in zip(schedule, schedule[max_t:]))
    assert early >= 30 and interleaved >= 20
