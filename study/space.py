"""The YAML search space as an Optuna define-by-run function, ``when:`` conditionals included."""
from __future__ import annotations

from typing import Any

from study.checks import dependency_order
from study.spec import CategoricalDist, Dist, FloatDist, StudySpec


def _active(dist: Dist, sampled: dict[str, Any]) -> bool:
    for dep, want in (dist.when or {}).items():
        wanted = want if isinstance(want, list) else [want]
        if dep not in sampled or sampled[dep] not in wanted:
            return False
    return True


def suggest(trial, dims: dict[str, Dist]) -> dict[str, Any]:
    """Sample every active dimension on an ``optuna.Trial``; inactive ones are left out."""
    sampled: dict[str, Any] = {}
    for name in dependency_order(dims):
        d = dims[name]
        if not _active(d, sampled):
            continue
        if isinstance(d, CategoricalDist):
            sampled[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, FloatDist):
            sampled[name] = trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)
        else:
            sampled[name] = trial.suggest_int(name, d.low, d.high, log=d.log, step=d.step)
    return sampled


class DefineByRun:
    """A picklable define-by-run space (Ray Tune checkpoints its searcher by pickling)."""

    def __init__(self, dims: dict[str, Dist]):
        self.dims = dims

    def __call__(self, trial) -> None:
        suggest(trial, self.dims)


def define_by_run(spec: StudySpec) -> DefineByRun:
    return DefineByRun(spec.dims())
