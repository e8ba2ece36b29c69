"""The Ray executor: one Tuner per phase in one Ray session per study, OptunaSearch (seeded TPE) in fixed
batches, ASHA over the recipes, matched baselines in the same pool; quiet, driver-side store writes."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from study.baselines import BaselineQueue
from study.executor import Executor
from study.spec import StudySpec
from study.tracking import storage

QUIET_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
             "RAY_DEDUP_LOGS": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
             "RAY_TRAIN_V2_ENABLED": "0", "PYTHONWARNINGS": "ignore", "TUNE_PRINT_ALL_TRIAL_ERRORS": "0"}


def ray_trial(config: dict, base: dict, seeds: list[int]) -> None:
    """Runs in a Ray worker: a recipe under every seed, or one matched baseline (``_baseline``: its whole
    config), each epoch reported to the driver. Baselines and recipes share one pool of workers."""
    from ray import tune

    from mmpkd_core import TrialConfig, run_recipe
    from study.errors import error_text
    from study.tracking import with_test_means

    if "_baseline" in config:
        cfg, seeds = TrialConfig.from_dict(config["_baseline"]), None
    else:
        config = {k: v for k, v in config.items() if k != "_recipe"}
        cfg = TrialConfig.from_dict(base).with_params(config)
        seeds = [config["seed"]] if "seed" in config else seeds
    try:  # the last report also carries the test means, flat, for the logger callbacks
        run_recipe(cfg, seeds or [cfg.seed], report=lambda row: tune.report(with_test_means(row)), prepared=True)
    except Exception as err:  # reported, not raised: the driver records the exact error; the study goes on
        tune.report({"val_objective": float("nan"), "error": error_text(err)})


def store_callback(rec):
    from ray import tune

    from mmpkd_core import TrialConfig

    class StoreCallback(tune.Callback):
        """Driver-side: every trial event goes through the Recorder into the store."""

        def on_trial_start(self, iteration, trials, trial, **info):
            if "_baseline" in trial.config:
                rec.start(trial.trial_id, {}, baseline_of=TrialConfig.from_dict(trial.config["_baseline"]))
            else:
                rec.start(trial.trial_id, params(trial), number=trial.config["_recipe"])

        def on_step_end(self, iteration, trials, **info):  # Tune's loop turns every second or so
            rec.store.poll()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            rec.epoch(trial.trial_id, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            status = "failed" if "error" in last else "completed" if "results" in last else "pruned"
            rec.finish(trial.trial_id, status, last.get("results"), error=last.get("error"), params=params(trial))

        def on_trial_recover(self, iteration, trials, trial, **info):
            # Tune runs the trial again (executor.max_retries): with no checkpoint, from its first epoch, on
            # whichever node has room; on_trial_start comes again when it does (the Recorder keeps its rows)
            self._started(iteration, trials, trial)
            rec.retry(trial.trial_id, f"{failure_cause(trial)[1]}; retry {trial.num_failures} of {trial.max_failures}")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._started(iteration, trials, trial)  # an actor that died being created never started
            text, cause = failure_cause(trial)
            tries = (f" ({trial.num_failures} attempts, executor.max_retries {trial.max_failures})"
                     if trial.num_failures > 1 else "")
            rec.finish(trial.trial_id, "failed", error=f"{text}\n{cause}{tries}".strip(), params=params(trial))

        def _started(self, iteration, trials, trial):
            if trial.trial_id not in rec.rows:
                self.on_trial_start(iteration, trials, trial)

    def params(trial) -> dict | None:  # None: a baseline
        if "_baseline" in trial.config:
            return None
        return {k: v for k, v in trial.config.items() if k != "_recipe"}

    return StoreCallback()


def failure_cause(trial) -> tuple[str, str]:
    """A trial that Tune saw fail (its worker process or its node died, or an error escaped the
    trainable): Ray's text of the latest failure, and one line of cause naming the node."""
    text = last_error(trial)
    node, alive = _node_of(text, trial)
    pid = re.search(r"\bpid: (\d+)", text)
    if "its node has died" in text or alive is False:
        return text, f"its {node} was lost"
    if "its worker process has died" in text:
        return text, (f"its worker process{f' {pid.group(1)}' if pid else ''} on {node} died "
                      "(killed, out of memory or crashed)")
    if "is unavailable" in text:  # the driver lost the actor's connection before Ray declared its node dead
        return text, f"its {node} stopped answering (lost, or cut off from the driver)"
    return text, next((line.strip() for line in reversed(text.splitlines()) if line.strip()),
                      "the trial failed (see the Ray log)")


def _node_of(text: str, trial) -> tuple[str, bool | None]:
    """'node ID (IP)' that the failed trial ran on, from Ray's error text or, by its actor, from Ray's
    actor table; and whether Ray still counts that node alive (None: not known)."""
    node_id = next(iter(re.findall(r"Node Id: ([0-9a-f]{16,})", text)), None)
    ip = next(iter(re.findall(r"\bip: (\S+)", text)), None) or (trial.last_result or {}).get("node_ip")
    actor = re.search(r"\bactor(?:_id:)? ?([0-9a-f]{32})\b", text)
    alive = None
    try:
        import ray

        if ray.is_initialized():
            if actor and not node_id:
                address = ray._private.state.actors(actor.group(1)).get("Address", {})
                node_id, ip = address.get("NodeID") or None, ip or address.get("IPAddress")
            alive = next((n["Alive"] for n in ray.nodes() if n["NodeID"] == node_id), None) if node_id else None
    except Exception:  # naming the node is a courtesy: the failure is recorded either way
        pass
    name = (f"node {node_id[:12]} ({ip})" if node_id and ip else f"node {node_id[:12]}" if node_id
            else f"node {ip}" if ip else "node")
    return name, alive


def last_error(trial) -> str:
    """The text of the trial's latest failure. Tune writes it into the trial's local folder at each
    failure (``get_error`` reads the copy synced to storage, which can be a failure behind)."""
    try:
        import cloudpickle

        with open(trial.pickled_error_file, "rb") as f:
            return str(cloudpickle.load(f)).strip()
    except Exception:
        pass
    try:
        return re.split(r"^Failure # \d+.*$", Path(trial.error_file).read_text(), flags=re.M)[-1].strip()
    except Exception:
        err = trial.get_error() if hasattr(trial, "get_error") else None
        return str(err).strip() if err is not None else ""


def check_address(address: str, timeout: float = 10.0) -> None:
    """``--address``: a cluster must answer there before anything is prepared. Ray itself would wait
    minutes for a head that is not there; this asks the address's TCP port once."""
    import socket

    from study.errors import StudyError

    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        if address == "auto":
            return
        raise StudyError(f"--address {address}: write HOST:PORT (the head's GCS port, 6379 by default) or "
                         "ray://HOST:PORT (Ray Client, 10001)")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except OSError as err:
        why = (f"no answer within {timeout:g} s" if isinstance(err, socket.timeout)
               else (err.strerror or str(err)).lower())
    raise StudyError(f"--address {address}: no Ray cluster answers there ({why}); start a "
                     "head with 'ray start --head --port 6379' (and 'ray start --address HEAD:6379' on each worker), "
                     "or leave --address out to run on this machine")


@contextmanager
def ray_session(spec: StudySpec, address: str | None):
    """Ray for one study: a new local instance on loopback, or the cluster at ``address``; shut down at the
    end if it was started here (a Ray the caller started already is used as it is)."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started_here = not ray.is_initialized()
    if started_here:
        # without --address, always a new local instance on loopback (never a cluster found lying around)
        local = {} if address else {"_node_ip_address": "127.0.0.1"}
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 **local,
                 num_cpus=None if address else max(os.cpu_count() or 1, int(spec.executor.resources.cpu)),
                 runtime_env={"env_vars": {k: os.environ[k] for k in QUIET_ENV}})
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def _resources(spec: StudySpec) -> dict:
    return {"cpu": spec.executor.resources.cpu, "gpu": spec.executor.resources.gpu}


class RayExecutor(Executor):
    kind = "ray"
    gains_while_running = True
    slow_session = True

    def slots(self) -> int:
        """Ray's ``max_concurrent``, as far as this machine's cores allow (on a cluster, ``--address``,
        as many as asked)."""
        return self.spec.executor.max_concurrent if self.address else self.node_slots()

    def node_slots(self) -> int:
        ex = self.spec.executor
        return max(1, min(ex.max_concurrent, int((os.cpu_count() or 1) // ex.resources.cpu)))

    def session(self):
        return ray_session(self.spec, self.address)

    def preload(self) -> None:
        # Tune and its Optuna searcher (about 0.7 s, measured with ray imported already); then the logger
        # integrations that Tune's fit imports to count the callbacks it was given (its usage tags: MLflow's
        # among them, another 0.7 s), which would otherwise delay the first trial
        import ray.air.integrations.comet  # noqa: F401
        import ray.air.integrations.mlflow  # noqa: F401
        import ray.air.integrations.wandb  # noqa: F401
        import ray.tune.logger.aim  # noqa: F401
        import ray.tune.schedulers  # noqa: F401
        import ray.tune.search.optuna  # noqa: F401

    def run(self, rec, finished: dict, baselines: BaselineQueue | None) -> None:
        run_ray(self.spec, self.base, rec, self.cache_dir, finished, baselines=baselines)

    def run_baselines(self, rec, configs: list) -> None:
        run_ray(self.spec, self.base, rec, self.cache_dir, baselines=BaselineQueue(self.base, [], configs),
                recipes=False, name=f"{self.spec.name}-baselines")


def run_ray(spec: StudySpec, base, rec, cache_dir: str, finished: dict | None = None,
            baselines: BaselineQueue | None = None, recipes: bool = True, name: str | None = None) -> None:
    """One Tuner, one pool of workers, in the study's Ray session (``ray_session``): the recipes
    (``recipes``) and the matched baselines they need (``baselines``) run side by side. A baseline takes
    a slot that no recipe can take (the sampler waiting for a batch's results, or every recipe handed
    out); ASHA judges the recipes only."""
    import ray
    from ray import tune

    from study.tracking import ray_callbacks

    if not ray.is_initialized():  # Tune would start a Ray of its own, with none of the session's settings
        raise RuntimeError("run_ray runs inside the study's ray_session")
    ex = spec.executor
    search = searcher(spec, finished, baselines=baselines, recipes=recipes, base=base)
    scheduler = recipe_scheduler(spec)
    if finished and spec.scheduler() == "asha":
        replay_rungs(scheduler, finished, spec.objective.mode)
    trainable = tune.with_parameters(ray_trial, base=base.to_dict(), seeds=spec.seed_list())
    tuner = tune.Tuner(
        tune.with_resources(trainable, _resources(spec)),
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, metric="val_objective",
                                    mode=spec.objective.mode, num_samples=-1,  # the searcher says when
                                    max_concurrent_trials=ex.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=name or spec.name, storage_path=storage(spec, cache_dir),
                                  verbose=0, callbacks=[store_callback(rec), *ray_callbacks(spec)],
                                  stop=failure_stopper(rec, ex.max_failures),
                                  failure_config=tune.FailureConfig(max_failures=ex.max_retries)),
    )
    tuner.fit()


def recipe_scheduler(spec: StudySpec):
    """ASHA over the recipes (a baseline in the same pool is never ranked nor stopped), or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    if spec.scheduler() != "asha":
        return FIFOScheduler()

    class RecipeASHA(ASHAScheduler):
        def on_trial_add(self, tune_controller, trial):
            if "_baseline" not in trial.config:
                super().on_trial_add(tune_controller, trial)

        def on_trial_result(self, tune_controller, trial, result):
            if "_baseline" in trial.config:
                return TrialScheduler.CONTINUE
            if result.get(self._time_attr, 0) >= self._max_t:
                # the last epoch: the recipe ends as its function returns rather than by ASHA's stop at this
                # result, so that the searcher is told this result a step before the trial ends
                # (``BatchedSearch.on_trial_result``). The rungs are unchanged: ASHA records this result
                # when the trial completes, as it does after its own stop
                return TrialScheduler.CONTINUE
            return super().on_trial_result(tune_controller, trial, result)

        def on_trial_complete(self, tune_controller, trial, result):
            if "_baseline" not in trial.config:
                super().on_trial_complete(tune_controller, trial, result)

        def on_trial_remove(self, tune_controller, trial):
            if "_baseline" not in trial.config:
                super().on_trial_remove(tune_controller, trial)

    from study.asha import REDUCTION_FACTOR

    ex = spec.executor
    return RecipeASHA(time_attr="training_iteration", max_t=spec.student.epochs,
                      grace_period=min(ex.grace_period, spec.student.epochs), reduction_factor=REDUCTION_FACTOR)


def replay_rungs(scheduler, finished: dict, mode: str) -> None:
    """Resuming: ASHA's rungs hold the stored epochs of the finished recipes, recorded as Tune recorded
    them (each epoch's result through the bracket, the objective signed for the mode), so that a
    recipe that runs now is stopped or kept against the same rung values as in the first run."""
    from types import SimpleNamespace

    sign = 1.0 if mode == "max" else -1.0
    for number in sorted(finished):
        bracket = scheduler._brackets[0] if len(scheduler._brackets) == 1 else None
        if bracket is None:  # several brackets draw at random: nothing to replay against
            return
        ghost = SimpleNamespace(trial_id=f"replay-{number}")
        for epoch, value in finished[number].get("epochs", []):
            if value is not None:
                bracket.on_result(ghost, epoch, sign * value)


def searcher(spec: StudySpec, finished: dict | None = None, baselines=None, recipes: bool = True, base=None):
    """OptunaSearch (seeded TPE) in fixed batches, so that the sequence of sampled recipes does not
    depend on how many trials run at once or in which order they finish. ``finished`` (resuming):
    recipe number -> stored outcome, replayed into the sampler before any new suggestion.
    ``baselines``: a ``study.baselines.BaselineQueue`` handed out where no recipe can be."""
    from ray.tune.search.optuna import OptunaSearch

    from study.sampling import first_batch, sampler
    from study.space import define_by_run

    search = OptunaSearch(space=define_by_run(spec), metric="val_objective", mode=spec.objective.mode,
                          sampler=sampler(spec), points_to_evaluate=spec.recipes or None)
    ex = spec.executor
    batched = batched_search(search, ex.sample_batch, ex.trials if recipes else 0, first_batch(spec), baselines,
                             lag=ex.sample_lag)
    if finished:
        batched.replay(finished)
    return batched


def batched_search(inner, batch: int, total: int, first: int | None = None, baselines=None, lag: int = 0):
    import pickle

    from ray.tune.search import Searcher

    from study.sampling import results_before

    class BatchedSearch(Searcher):
        """Suggestions in fixed batches of ``batch`` recipes, whose results are told to the sampler in the
        order they were suggested. Batch k is sampled once every batch up to k - 1 - ``lag`` has finished,
        their results told just before (``sampling.results_before``): with lag 0 each batch waits for the
        one before; with lag 1 a batch is sampled while the one before still runs, from the results of
        those before it. The first ``first`` recipes (the sampler's draws that learn nothing from
        results: TPE's start-up trials, a fixed design's every recipe) are handed out at once. So the
        sequence of recipes does not depend on how many trials run at once or in which order they
        finish. (Ray's ConcurrencyLimiter(batch=True) closes a batch whenever its live trials finish, so
        its batches depend on timing.) A slot that no recipe can take goes to the next matched baseline
        still to run."""

        def __init__(self):
            super().__init__(metric=inner.metric, mode=inner.mode)
            self.inner, self.batch, self.total, self.lag = inner, batch, total, lag
            self.first = max(batch, first or batch)
            self.baselines = baselines
            self.issued = 0
            self.order: list[str] = []  # the inner searcher's trial ids, by recipe number
            self.results: dict[str, tuple | None] = {}  # inner trial id -> (result, error) once finished
            self.told = 0  # recipes whose results the inner searcher has, in order
            self.pending: list[tuple[str, dict, int]] = []  # replayed suggestions still to run
            self.alias: dict[str, str] = {}  # Tune trial id -> the id the inner searcher knows it by
            self.baseline_ids: set[str] = set()
            self.steps: dict[str, int] = {}  # Tune trial id -> the last training_iteration told

        def set_search_properties(self, metric, mode, config, **spec):
            return self.inner.set_search_properties(metric, mode, config, **spec)

        def needed(self, n: int) -> int:
            """How many recipes, in order, have finished (and are told) before recipe ``n`` is sampled."""
            return 0 if n < self.first else results_before(n, self.batch, self.lag)

        def ready(self, n: int) -> bool:  # the recipes told already have finished: the rest are checked
            return all(self.results.get(self.order[i]) is not None for i in range(self.told, self.needed(n)))

        def tell_through(self, count: int) -> None:
            while self.told < count:
                tid = self.order[self.told]
                res, err = self.results[tid]
                self.inner.on_trial_complete(tid, result=res, error=err)
                self.told += 1

        def replay(self, finished: dict) -> None:
            """Re-ask the seeded sampler for every recipe up to the last stored one, telling the stored
            results as the run told them: finished recipes are told their stored result, interrupted ones
            are handed out again first."""
            from study.errors import StudyError
            from study.sampling import check_replay

            for n in range(max(finished) + 1 if finished else 0):
                if not self.ready(n):  # the run sampled recipe n only after these had finished
                    raise StudyError(f"cannot resume: recipe #{n} was sampled before the results it needs were "
                                     "stored; use --replace to start over")
                self.tell_through(self.needed(n))
                fid = f"replay-{n}"
                cfg = self.inner.suggest(fid)
                self.order.append(fid)
                self.results[fid] = None
                self.issued += 1
                if n in finished:
                    done = finished[n]
                    check_replay(n, cfg, done["params"])
                    value = done["value"] if done["status"] != "failed" else float("nan")
                    self.results[fid] = ({"val_objective": value}, done["status"] == "failed")
                else:
                    self.pending.append((fid, cfg, n))

        def suggest(self, trial_id):
            if self.pending:
                fid, cfg, n = self.pending.pop(0)
                self.alias[trial_id] = fid
                return self._with_baselines({**cfg, "_recipe": n})
            n = self.issued
            if n < self.total and self.ready(n):
                self.tell_through(self.needed(n))
                cfg = self.inner.suggest(trial_id)
                if cfg not in (None, Searcher.FINISHED):
                    self.order.append(trial_id)
                    self.results[trial_id] = None
                    self.issued += 1
                    return self._with_baselines({**cfg, "_recipe": n})
            if self.baselines is not None and self.baselines.todo:
                self.baseline_ids.add(trial_id)
                return {"_baseline": self.baselines.todo.pop(0).to_dict()}
            if self.issued >= self.total and not self.pending:
                return Searcher.FINISHED
            return None

        def _with_baselines(self, cfg: dict) -> dict:
            if self.baselines is not None:  # a recipe that samples the student's schedule needs its own
                self.baselines.for_recipe({k: v for k, v in cfg.items() if k != "_recipe"})
            return cfg

        def on_trial_result(self, trial_id, result):
            if trial_id in self.baseline_ids:
                return
            # a retried trial (executor.max_retries) reports its epochs again from the first: the sampler
            # has them already
            step = result.get("training_iteration")
            if step is not None and step <= self.steps.get(trial_id, 0):
                return
            self.steps[trial_id] = step or 0
            self.inner.on_trial_result(self.alias.get(trial_id, trial_id), result)
            if "results" in result or "error" in result:  # its last report: the trial is over, its outcome known
                # now, a step before Tune ends the trial. The next batch is then staged before the trial's worker
                # is released, and Tune hands it that worker instead of stopping it (its actor cache keeps
                # workers for staged trials only): no new worker and its imports after a batch's wait
                self.on_trial_complete(trial_id, result)

        def on_trial_complete(self, trial_id, result=None, error=False):
            trial_id = self.alias.get(trial_id, trial_id)
            if self.results.get(trial_id, False) is not None:  # unknown, or finished already: recorded once
                return
            self.results[trial_id] = (result, error)
            if self.issued >= self.total and not self.pending and None not in self.results.values():
                self.tell_through(len(self.order))  # the last results, in order: the sampler ends complete

        def save(self, checkpoint_path):
            with open(checkpoint_path, "wb") as f:
                pickle.dump(self.__dict__, f)

        def restore(self, checkpoint_path):
            with open(checkpoint_path, "rb") as f:
                self.__dict__.update(pickle.load(f))

    return BatchedSearch()


def failure_stopper(rec, limit: int | None):
    from ray.tune.stopper import Stopper

    class FailureLimit(Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return limit is not None and len(rec.failed) > limit

    return FailureLimit()
