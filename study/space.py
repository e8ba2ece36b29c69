"""The YAML search space as an Optuna define-by-run function, ``when:`` conditionals included."""
from __future__ import annotations

from typing import Any

from study.errors import SpecError
from study.spec import CategoricalDist, Dist, FloatDist, StudySpec


def dependency_order(dims: dict[str, Dist]) -> list[str]:
    """Dimensions ordered so that every ``when:`` names one sampled before it."""
    order, seen = [], set()

    def visit(name: str, stack: tuple) -> None:
        if name in seen:
            return
        if name in stack:
            raise SpecError(f"search_space.{name}.when", f"conditions form a cycle: {' -> '.join(stack + (name,))}")
        for dep in (dims[name].when or {}):
            visit(dep, stack + (name,))
        seen.add(name)
        order.append(name)

    for name in dims:
        visit(name, ())
    return order


def active(dist: Dist, sampled: dict[str, Any]) -> bool:
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
        if not active(d, sampled):
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
