"""Running a study: prepare data and teachers once, then sample and run trials.

``kind: ray`` runs trials in Ray Tune (OptunaSearch with a seeded TPE sampler, ASHA or FIFO) on a
local Ray instance, or on an existing cluster with ``address``. ``kind: local`` runs the same
trials in this process with plain Optuna, for debugging. Either way the driver alone writes
the database, one transaction per finished trial.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from study.spec import StudySpec
from study.store import Store


def base_config(spec: StudySpec, cache_dir: str):
    from mmpkd_core import DataConfig, StudentConfig, TrialConfig
    from mmpkd_core.data import DOMAINS
    from mmpkd_core.teachers import TEACHERS

    modality = DOMAINS.get(spec.domain).modality
    teacher = spec.recipe.teacher or next(t for t in TEACHERS.names() if TEACHERS.get(t).modality == modality)
    return TrialConfig(
        domain=spec.domain, data=DataConfig(**spec.data.model_dump()), student=StudentConfig(**spec.student.model_dump()),
        teacher=teacher, temperature=spec.recipe.temperature, alpha=spec.recipe.alpha, beta=spec.recipe.beta,
        attention_method=spec.recipe.attention_method or spec.evaluation.methods[0], seed=spec.recipe.seed,
        eval_methods=tuple(spec.evaluation.methods), eval_metrics=tuple(spec.evaluation.metrics),
        objective_metric=spec.objective.metric, cache_dir=cache_dir, threads=max(1, int(spec.executor.resources.cpu)),
    )


def prepare(spec: StudySpec, cache_dir: str, say) -> None:
    """Generate the data and fit every teacher the study can sample, once, before any trial."""
    from mmpkd_core.data import load_domain
    from mmpkd_core.teachers import teacher_outputs

    base = base_config(spec, cache_dir)
    t0 = time.perf_counter()
    load_domain(spec.domain, base.data, cache_dir)
    dims = spec.dims()
    teachers = dims["teacher"].choices if "teacher" in dims else [base.teacher]
    seeds = dims["seed"].choices if "seed" in dims and hasattr(dims["seed"], "choices") else [base.seed]
    for t in teachers:
        for seed in seeds:
            out = teacher_outputs(str(t), spec.domain, base.data, int(seed), cache_dir)
            say(f"teacher {t} (seed {seed}): test AUROC {out.metrics['test_auroc']:.3f}")
    say(f"data and teachers ready in {time.perf_counter() - t0:.1f} s")


@dataclass
class Outcome:
    study: str
    counts: dict
    best: dict | None
    wall_seconds: float


class Recorder:
    """The driver's single path from trial events to the store (used by both executors)."""

    def __init__(self, store: Store, study: str, base, say, total: int):
        self.store, self.study, self.base, self.say, self.total = store, study, base, say, total
        self.epochs: dict[str, list[dict]] = {}
        self.numbers: dict[str, int] = {}

    def __getstate__(self):  # Ray Tune pickles callbacks with its state; the console stays behind
        return {**self.__dict__, "say": print}

    def start(self, key: str, params: dict) -> str:
        number = len(self.numbers)
        trial_id = f"{number:04d}"
        self.numbers[key] = number
        self.epochs[trial_id] = []
        cfg = self.base.with_params(params)
        self.store.trial_started(self.study, trial_id, number, cfg.to_dict(), params, cfg.config_hash())
        return trial_id

    def trial_id(self, key: str) -> str:
        return f"{self.numbers[key]:04d}"

    def epoch(self, trial_id: str, row: dict) -> None:
        self.epochs[trial_id].append({k: v for k, v in row.items() if k != "result"})

    def finish(self, trial_id: str, status: str, result: dict | None = None, error: str | None = None,
               params: dict | None = None) -> None:
        eps = self.epochs.pop(trial_id, [])
        self.store.trial_finished(self.study, trial_id, status, eps, result, error)
        done = len(self.numbers) - len(self.epochs)
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in (params or {}).items())
        if status == "completed":
            tail = f"val {_fmt(result['val_objective'])} test {_fmt(result['test_objective'])} " \
                   f"AUROC {_fmt(result['test_auroc'])} ({result['trial_seconds']:.1f} s)"
        elif status == "pruned":
            tail = f"pruned after {len(eps)} epochs (val {_fmt(eps[-1]['val_objective']) if eps else '-'})"
        else:
            tail = f"FAILED: {(error or '').splitlines()[-1] if error else ''}"
        self.say(f"trial {trial_id} [{done}/{self.total}] {shown}  {tail}")


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run_study(spec: StudySpec, store: Store, cache_dir: str, say=print, address: str | None = None) -> Outcome:
    cache_dir = str(Path(cache_dir).resolve())
    t0 = time.perf_counter()
    prepare(spec, cache_dir, say)
    base = base_config(spec, cache_dir)
    store.create_study(spec.name, spec.domain, spec.model_dump_json(), spec.spec_hash())
    rec = Recorder(store, spec.name, base, say, spec.executor.trials)
    status = "failed"
    try:
        if spec.executor.kind == "ray":
            from study.ray_executor import run_ray

            run_ray(spec, base, rec, cache_dir, address)
        else:
            run_local(spec, base, rec)
        status = "completed"
    finally:
        wall = time.perf_counter() - t0
        store.finish_study(spec.name, status, wall)
    return summarize(store, spec.name, wall, spec.objective.mode)


def summarize(store: Store, study: str, wall: float, mode: str) -> Outcome:
    counts = dict(store.con.execute("SELECT status, count(*) FROM trials WHERE study = ? GROUP BY status ORDER BY status",
                                    [study]).fetchall())
    order = "DESC" if mode == "max" else "ASC"
    row = store.con.execute(
        f"SELECT trial_id, params_json, val_objective, test_objective, test_auroc FROM trials "
        f"WHERE study = ? AND status = 'completed' ORDER BY val_objective {order} NULLS LAST LIMIT 1", [study]).fetchone()
    best = None if row is None else dict(zip(["trial_id", "params", "val_objective", "test_objective", "test_auroc"], row))
    return Outcome(study, counts, best, wall)


def run_local(spec: StudySpec, base, rec: Recorder) -> None:
    """The same trials in this process with plain Optuna (seeded TPE, successive halving)."""
    import optuna

    from mmpkd_core import run_trial
    from study.space import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=min(spec.executor.grace_period, spec.student.epochs))
              if spec.executor.scheduler == "asha" else optuna.pruners.NopPruner())
    ostudy = optuna.create_study(direction="maximize" if spec.objective.mode == "max" else "minimize",
                                 sampler=sampler(spec), pruner=pruner)
    dims = spec.dims()

    def objective(trial) -> float:
        params = suggest(trial, dims)
        tid = rec.start(str(trial.number), params)

        def report(row: dict) -> None:
            rec.epoch(tid, row)
            trial.report(row["val_objective"], row["epoch"])
            if "result" not in row and trial.should_prune():
                raise optuna.TrialPruned()

        try:
            result = run_trial(base.with_params(params), report)
        except optuna.TrialPruned:
            rec.finish(tid, "pruned", params=params)
            raise
        except Exception as err:  # a failing trial must not sink the study
            rec.finish(tid, "failed", error=_error_text(err), params=params)
            raise
        rec.finish(tid, "completed", result.payload(), params=params)
        return result.val_objective

    ostudy.optimize(objective, n_trials=spec.executor.trials, catch=(Exception,))


def sampler(spec: StudySpec):
    import optuna

    n = spec.executor.trials
    return optuna.samplers.TPESampler(seed=spec.executor.seed, n_startup_trials=min(10, max(2, n // 2)))


def _error_text(err: BaseException) -> str:
    lines = traceback.format_exception(type(err), err, err.__traceback__)
    return "".join(lines[-3:]).strip() + f"\n{type(err).__name__}: {err}"

