"""ASHA, one stopping rule for both executors: the rule of Ray Tune's asynchronous successive halving
(``ASHAScheduler``, one bracket, reduction factor ``REDUCTION_FACTOR``). A recipe is judged at rungs of
``grace_period`` x 3^k epochs below the last epoch; reaching a rung, it is stopped when its objective is
below the (1 - 1/3) quantile (linear interpolation) of the objectives that recipes reaching that rung
before it recorded; the first to reach a rung goes on. The Ray executor runs Ray's scheduler with this
factor; the local executor runs the same rule as an Optuna pruner (``AshaPruner``), so that a study's
recipes, run one at a time in the same order, are stopped at the same epochs by either."""
from __future__ import annotations

import warnings

import numpy as np
import optuna

REDUCTION_FACTOR = 3


def rungs(grace_period: int, max_t: int, reduction_factor: float = REDUCTION_FACTOR) -> list[int]:
    """The epochs at which a recipe is judged, ascending, as Ray's bracket computes them (a rung at or
    beyond ``max_t`` judges nothing: a recipe reaching the last epoch has completed)."""
    count = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
    return [int(grace_period * reduction_factor ** k) for k in range(count)]


def rung_value(values: dict[int, float], rung: int, above: int | None = None) -> float | None:
    """What a recipe recorded at ``rung``: its objective at the first reported epoch at or after it, unless
    that epoch reached the rung ``above`` too (Ray judges a report at the highest rung it reaches)."""
    steps = [s for s in values if s >= rung]
    if not steps or (above is not None and min(steps) >= above):
        return None
    return values[min(steps)]


class AshaPruner(optuna.pruners.BasePruner):
    """The rule above for an Optuna study whose trials report the objective every epoch (``step`` =
    epoch, from 1): a trial is judged at the first report at or past a rung it has not recorded yet,
    against every other trial's recorded value at that rung."""

    def __init__(self, grace_period: int, max_t: int, mode: str = "max",
                 reduction_factor: float = REDUCTION_FACTOR):
        self.rungs, self.max_t, self.rf = rungs(grace_period, max_t, reduction_factor), max_t, reduction_factor
        self.sign = 1.0 if mode == "max" else -1.0

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        values = trial.intermediate_values
        step = trial.last_step
        if step is None or step >= self.max_t:  # the last epoch: the recipe has completed
            return False
        earlier = [s for s in values if s < step]
        k = next((k for k in reversed(range(len(self.rungs)))
                  if self.rungs[k] <= step and not any(s >= self.rungs[k] for s in earlier)), None)  # reached now
        if k is None:
            return False
        above = self.rungs[k + 1] if k + 1 < len(self.rungs) else None
        recorded = [v for t in study.get_trials(deepcopy=False) if t.number != trial.number
                    and (v := rung_value(t.intermediate_values, self.rungs[k], above)) is not None]
        if not recorded:
            return False
        with warnings.catch_warnings():  # every recorded value NaN: no cutoff, the trial goes on
            warnings.simplefilter("ignore", RuntimeWarning)
            cutoff = np.nanpercentile([self.sign * v for v in recorded], (1 - 1 / self.rf) * 100)
        return bool(self.sign * values[step] < cutoff)
