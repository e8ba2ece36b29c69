"""Ray Tune executor: Tuner + OptunaSearch (seeded TPE) + ASHA, quiet, driver-side store writes."""
from __future__ import annotations

import os
from pathlib import Path

from study.spec import StudySpec

QUIET_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
             "RAY_DEDUP_LOGS": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
             "RAY_TRAIN_V2_ENABLED": "0", "PYTHONWARNINGS": "ignore"}


def ray_trial(config: dict, base: dict) -> None:
    """Runs in a Ray worker: one trial, each epoch reported to the driver."""
    from ray import tune

    from mmpkd_core import TrialConfig, run_trial

    cfg = TrialConfig.from_dict(base).with_params(config)
    run_trial(cfg, report=tune.report)


def _callback_class():
    from ray import tune

    class StoreCallback(tune.Callback):
        """Driver-side: every trial event goes through the Recorder into the store."""

        def __init__(self, rec):
            self.rec = rec

        def on_trial_start(self, iteration, trials, trial, **info):
            self.rec.start(trial.trial_id, dict(trial.config))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.rec.epoch(self.rec.trial_id(trial.trial_id), result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            status = "completed" if "result" in last else "pruned"
            self.rec.finish(self.rec.trial_id(trial.trial_id), status, last.get("result"), params=dict(trial.config))

        def on_trial_error(self, iteration, trials, trial, **info):
            err = trial.get_error() if hasattr(trial, "get_error") else None
            text = str(err) if err is not None else "trial raised (see the Ray log)"
            self.rec.finish(self.rec.trial_id(trial.trial_id), "failed", error=text, params=dict(trial.config))

    return StoreCallback


def run_ray(spec: StudySpec, base, rec, cache_dir: str, address: str | None = None) -> None:
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from study.executor import sampler
    from study.space import define_by_run

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ex = spec.executor
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 num_cpus=None if address else max(os.cpu_count() or 1, int(ex.resources.cpu)),
                 runtime_env={"env_vars": {k: os.environ[k] for k in QUIET_ENV}})
    try:
        metric, mode = "val_objective", spec.objective.mode
        search = OptunaSearch(space=define_by_run(spec), metric=metric, mode=mode, sampler=sampler(spec))
        scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=spec.student.epochs,
                                   grace_period=min(ex.grace_period, spec.student.epochs), reduction_factor=3)
                     if ex.scheduler == "asha" else FIFOScheduler())
        trainable = tune.with_resources(tune.with_parameters(ray_trial, base=base.to_dict()),
                                        {"cpu": ex.resources.cpu, "gpu": ex.resources.gpu})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, metric=metric, mode=mode,
                                        num_samples=ex.trials, max_concurrent_trials=ex.max_concurrent,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name=spec.name, storage_path=str(Path(cache_dir) / "ray_results"),
                                      verbose=0, callbacks=[_callback_class()(rec)]),
        )
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
