"""Running a study: prepare data and teachers once, run the matched baselines, then sample and
run the recipes.

``kind: ray`` runs trials in Ray Tune (OptunaSearch with a seeded TPE sampler, ASHA or FIFO) on a
local Ray instance, or on an existing cluster with ``address``. ``kind: local`` runs the same
trials in this process with plain Optuna, for debugging. Either way the driver alone writes the
database, one transaction per finished trial.

A *recipe* is one sampled point of the search space; it is trained once per seed of
``spec.seeds``, in lockstep, and each seed is stored as its own row of ``trials``, paired with its
own baseline (``baseline_key``).
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from study.errors import StudyError, error_text
from study.sampling import check_replay, sampler
from study.spec import StudySpec
from study.store import Store
from study.tracking import Trackers, check_tracking, open_trackers
from study.trial_config import base_config


def device_line(spec: StudySpec) -> str:
    """Where the trials will train, as the driver sees it (on a cluster, each worker picks its own)."""
    import torch

    threads = max(1, int(spec.executor.resources.cpu))
    if torch.cuda.is_available() and spec.executor.resources.gpu > 0:
        return (f"{torch.cuda.get_device_name(0)} ({spec.executor.resources.gpu:g} GPU per trial, "
                f"{spec.student.precision})")
    note = " (bf16 applies on a GPU only)" if spec.student.precision == "bf16" else ""
    return f"CPU, {threads} thread(s) per trial{note}"


def prepare(spec: StudySpec, base, cache_dir: str, say) -> str:
    """Generate the data and fit every teacher the study can sample, once, before any trial. Returns
    the training subset in words (data.options.max_train), or ""."""
    from mmpkd_core.data import load_domain
    from mmpkd_core.teachers import TEACHERS, teacher_outputs

    t0 = time.perf_counter()
    data = load_domain(spec.domain, base.data, cache_dir)
    check_memory(spec, base, data, say)
    if data.subset:  # data.options.max_train
        say(data.subset)
    if base.student.pretrained:  # a checkpoint of another shape stops the study here, not in every trial
        from mmpkd_core.student import build_student

        try:
            build_student(base.student, data.images.shape[-1])
        except ValueError as err:
            raise StudyError(str(err)) from None
        say(f"student starts from {base.student.pretrained}")
    dims = spec.dims()
    teachers = dims["teacher"].choices if "teacher" in dims else [base.teacher]
    seeds = dims["seed"].choices if "seed" in dims and hasattr(dims["seed"], "choices") else spec.seed_list()
    for t in teachers:
        for seed in seeds:
            with torch_threads(base.threads):
                out = teacher_outputs(str(t), spec.domain, base.data, int(seed), cache_dir,
                                      json.loads(base.teacher_options))
            note = (" (a control that reads the labels: not a measure of skill)" if TEACHERS.get(str(t)).reads_labels
                    else "")
            say(f"teacher {t} (seed {seed}): test AUROC {out.metrics['test_auroc']:.3f}{note}")
    say(f"data and teachers ready in {time.perf_counter() - t0:.1f} s")
    return data.subset


@contextmanager
def torch_threads(n: int):
    """Teachers fit in the driver with a trial's threads (``executor.resources.cpu``), not one per core:
    a small fit spread over every core of a busy machine waits on its own threads (the mlp teacher of
    search_spaces/ddsm.yaml: 165 s at torch's default against 3 s at one thread, measured on 2 loaded
    cores), and its numbers then depend on the machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_memory(spec: StudySpec, base, data, say) -> None:
    """Before any training: each trial's memory (mmpkd_core.memory) times the trials that run at once on
    this node, against what it has; one line naming the numbers and the knob if they cannot fit."""
    import torch

    from mmpkd_core.memory import check

    res = spec.executor.resources
    at_once = slots(spec)
    seeds = 1 if "seed" in spec.dims() else len(spec.seed_list())  # seeds of a recipe train in one process
    gpu = res.gpu if res.gpu > 0 and torch.cuda.is_available() else None
    est, problem = check(base, data, at_once, seeds, gpu_share=gpu)
    if problem:
        raise StudyError(problem)
    say(f"memory: about {est.host_mb:,.0f} MB per trial ({est.describe()}), {at_once} at once")


class TooManyFailures(StudyError):
    pass


def check_failures(spec: StudySpec, rec: "Recorder") -> None:
    limit = spec.executor.max_failures
    if limit is not None and len(rec.failed) > limit:
        raise TooManyFailures(f"study '{spec.name}' stopped: {len(rec.failed)} trials failed (executor.max_failures "
                              f"{limit}); last error: {rec.failed[-1]}. Finished trials are stored.")


@dataclass
class Outcome:
    study: str
    counts: dict
    best: dict | None
    wall_seconds: float


class Recorder:
    """The driver's single path from trial events to the store (used by both executors).

    ``key`` is the executor's own trial id; each key stands for one recipe, stored as one row per
    seed. Baselines are recipes too (``is_baseline``), keyed in the store by their config hash.
    """

    def __init__(self, store: Store, study: str, base, say, total: int, seeds: list[int]):
        self.store, self.study, self.base, self.say, self.total, self.seeds = store, study, base, say, total, seeds
        self.rows: dict[str, dict[int, str]] = {}  # key -> seed -> trial_id
        self.epochs: dict[str, list[dict]] = {}  # trial_id -> epoch rows
        self.recipes = 0
        self.finished = 0
        self.failed: list[str] = []  # error texts of failed recipes
        self.retries = 0  # trials run again after their worker process or node died (executor.max_retries)
        self.trackers = Trackers()  # the Optuna mirror and the spec's trackers (study.tracking); run_study opens them
        self.started: dict[str, float] = {}  # key -> when the driver saw it start (for trials that leave no result)
        self.mode = "max"  # the objective's direction, for the best value on the progress line
        self.counts = {"completed": 0, "pruned": 0, "failed": 0}  # finished recipes by end, this run
        self.best: float | None = None
        self.baseline_keys: set[str] = set()
        self.progress = None  # a live progress line (study.progress.LiveLine) on a terminal, else None
        self.gains = False  # refresh the gains of the recipes whose baseline has finished, as they finish
        self.gains_cost, self.gains_at = 0.0, time.perf_counter()

    def __getstate__(self):  # Ray Tune pickles callbacks with its state; the console stays behind
        return {**self.__dict__, "say": print, "progress": None}

    def start(self, key: str, params: dict, baseline_of=None, number: int | None = None) -> None:
        from mmpkd_core import baseline_config

        if key in self.rows:  # a retried trial starting again (``retry``): its rows are there already
            return
        self.started[key] = time.perf_counter()
        if baseline_of is not None:  # a baseline: one config, one row
            self.baseline_keys.add(key)
            cfg = baseline_of
            tid = f"baseline-{cfg.config_hash()}"
            self.rows[key] = {cfg.seed: tid}
            self.epochs[tid] = []
            self.store.trial_started(self.study, tid, None, cfg.to_dict(), {}, cfg.config_hash(), None)
            self._show()
            return
        if number is None:
            number = self.recipes
        self.recipes = max(self.recipes, number + 1)
        self.rows[key] = {}
        for seed in self.seeds:
            cfg = self.base.with_params(params if "seed" in params else {**params, "seed": seed})
            tid = f"{number:04d}" if len(self.seeds) == 1 else f"{number:04d}.s{seed}"
            self.rows[key][cfg.seed] = tid
            self.epochs[tid] = []
            self.store.trial_started(self.study, tid, number, cfg.to_dict(), params, cfg.config_hash(),
                                     baseline_config(cfg).config_hash())
            if "seed" in params:
                break
        self._show()

    def retry(self, key: str, cause: str) -> None:
        """The executor runs a trial again from its first epoch (its worker process or node died): the
        same rows, none of the dead attempt's epochs, one line naming the cause."""
        rows = self.rows.get(key, {})
        for tid in rows.values():
            self.epochs[tid] = []
        self.retries += 1
        what = (f"baseline seed {next(iter(rows), '?')}" if key in self.baseline_keys
                else f"trial {', '.join(rows.values())}")
        self.say(f"{what}: {cause}: running it again from epoch 1")

    def epoch(self, key: str, row: dict) -> None:
        self.store.poll()  # a change that the pace held back is published here
        if "epoch" not in row:  # a worker's error report, not an epoch
            return
        for seed, tid in self.rows[key].items():
            per_seed = row.get("per_seed", {}).get(str(seed), row)
            self.epochs[tid].append({k: v for k, v in per_seed.items() if k not in ("result", "results", "per_seed")})
        self.trackers.epoch(self.rows[key], row)

    def finish(self, key: str, status: str, results: list[dict] | None = None, error: str | None = None,
               params: dict | None = None) -> None:
        by_seed = {r["seed"]: r for r in results or []}
        rows = self.rows.pop(key)
        # a trial that leaves no result (pruned, failed) still cost its slot: the driver's wall time from
        # its start to its end, shared between the seeds it trained in lockstep
        cost = (time.perf_counter() - self.started.pop(key, time.perf_counter())) / max(1, len(rows))
        for seed, tid in rows.items():
            eps = self.epochs.pop(tid, [])
            self.store.trial_finished(self.study, tid, status, eps, by_seed.get(seed), error, seconds=cost)
            self.trackers.finished(tid)
        self.finished += params is not None  # baselines are not among the study's trials
        if status == "failed":
            self.failed.append((error or "").strip().splitlines()[-1] if error else "")
        if params is not None:
            self.counts[status] = self.counts.get(status, 0) + 1
            if status == "completed":
                value = sum(r["val_objective"] for r in results) / len(results)
                if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
                    self.best = value
        self.say(self._line(key, status, results, error, params, eps))
        if status == "completed":
            self.refresh_gains()
        self._show()

    def refresh_gains(self, share: float = 0.05) -> None:
        """The gains of every recipe whose matched baseline has finished, while the study runs: at most
        ``share`` of the driver's time (the next refresh waits until the last one's cost is that share of
        the time since); the study's end refreshes them all."""
        if not self.gains or self.gains_cost > share * (time.perf_counter() - self.gains_at):
            return
        from study.gain_tables import refresh_gains
        from study.stats import PairingError

        t0 = time.perf_counter()
        try:
            refresh_gains(self.store, self.study, ready_only=True)
        except PairingError:  # said, with its fix, by the refresh at the study's end
            pass
        self.gains_at = time.perf_counter()
        self.gains_cost = self.gains_at - t0

    def _show(self) -> None:
        if self.progress is not None:
            baselines = sum(1 for k in self.rows if k in self.baseline_keys)
            self.progress.update(finished=self.finished, total=self.total, running=len(self.rows) - baselines,
                                 baselines=baselines, best=self.best, **self.counts)

    def _line(self, key, status, results, error, params, eps) -> str:
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in (params or {}).items()) or "no distillation"
        if status == "completed":
            def mean(k: str) -> float:
                return sum(r[k] for r in results) / len(results)

            tail = (f"val {_fmt(mean('val_objective'))} test {_fmt(mean('test_objective'))} "
                    f"AUROC {_fmt(mean('test_auroc'))} ({sum(r['trial_seconds'] for r in results):.1f} s)")
        elif status == "pruned":
            tail = f"pruned after {len(eps)} epochs (val {_fmt(eps[-1]['val_objective']) if eps else '-'})"
        else:
            tail = f"FAILED: {(error or '').strip().splitlines()[-1] if error else ''}"
        kind = "baseline" if params is None else f"trial [{self.finished}/{self.total}]"
        return f"{kind} {shown}  {tail}"


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run_study(spec: StudySpec, store: Store, cache_dir: str, say=print, address: str | None = None,
              resume: bool = False, progress=None) -> Outcome:
    """Run the study, or continue it (``resume``): finished recipes are kept once, recipes that were
    running when the process died are run again with the same sampled values, and the sampler
    replays the stored results to continue its own sequence."""
    from study.design import plan, resolved

    cache_dir = str(Path(cache_dir).resolve())
    t0 = time.perf_counter()
    recipes = plan(spec, store)  # a fixed design's recipes (a reference study that is not there stops us here)
    stored_spec = spec
    if recipes is not None:
        spec = resolved(spec, recipes)
        say(f"design {spec.design}: {len(recipes)} recipes x {len(spec.seed_list())} seed(s), every one completed")
    say(f"device: {device_line(spec)}")
    base = base_config(spec, cache_dir)
    check_tracking(spec, cache_dir, say)  # a tracking URI that cannot be opened stops the study here
    with ExitStack() as session:  # Ray, started beside the preparation and held for the whole study
        subset = _prepare_beside_ray(spec, base, cache_dir, say, address, session)
        finished: dict = {}
        if resume:
            finished, killed = store.resume_state(spec.name)
            store.reopen_study(spec.name, planned=spec.executor.trials * len(spec.seed_list()))
            say(f"resuming {spec.name}: {len(finished)} recipes kept, {len(killed)} interrupted ones run again, "
                f"{max(0, spec.executor.trials - len(finished) - len(killed))} still to sample")
        else:
            store.create_study(spec.name, spec.domain, stored_spec.model_dump_json(), stored_spec.spec_hash(),
                               planned=spec.executor.trials * len(spec.seed_list()))
        store.set_data_subset(spec.name, subset)
        rec = Recorder(store, spec.name, base, say, spec.executor.trials, spec.seed_list())
        rec.finished = len(finished)
        rec.trackers = open_trackers(spec, store, cache_dir, resume, say)
        rec.mode, rec.progress = spec.objective.mode, progress  # progress: a live line on a terminal (cli)
        rec.gains = spec.baselines and spec.executor.kind == "ray"  # locally the baselines ran first: gains at the end
        rec._show()
        status = "failed"
        try:
            _run_phases(spec, base, rec, store, cache_dir, address, finished)
            status = "completed"
        except TooManyFailures:
            status = "stopped"
            raise
        finally:
            session.close()  # Ray's shutdown is part of the study's wall time
            before = (store.study_row(spec.name)["wall_seconds"] or 0.0) if resume else 0.0
            wall = time.perf_counter() - t0 + before
            store.finish_study(spec.name, status, wall, slots=slots(spec, address))
    return summarize(store, spec.name, wall, spec.objective.mode)


def slots(spec: StudySpec, address: str | None = None) -> int:
    """How many trials run at once: the local executor's one, or Ray's ``max_concurrent`` as far as this
    machine's cores allow (on a cluster, ``--address``, as many as asked). The denominator of slot
    utilisation and the multiplier of the memory check."""
    import os

    ex = spec.executor
    if ex.kind == "local":
        return 1
    if address:
        return ex.max_concurrent
    return max(1, min(ex.max_concurrent, int((os.cpu_count() or 1) // ex.resources.cpu)))


def _run_phases(spec: StudySpec, base, rec: Recorder, store: Store, cache_dir: str, address: str | None,
                finished: dict) -> None:
    """The matched baselines and the sweep, then any baselines the sweep still needs. Under Ray they
    share one pool: a baseline runs in a slot no recipe can take. The local executor, one trial at a
    time, runs the spec's baselines first."""
    from mmpkd_core import baseline_config

    own = [baseline_config(base.with_params({"seed": s})) for s in spec.seed_list()] if spec.baselines else []
    if spec.executor.kind == "ray":
        from study.ray_executor import run_ray

        queue = (BaselineQueue(base, spec.seed_list(), baselines_to_run(own, rec), rec.store.current_baselines())
                 if spec.baselines else None)
        run_ray(spec, base, rec, cache_dir, address, finished, baselines=queue)
    else:
        run_baselines(spec, own, rec, cache_dir, address)
        run_local(spec, base, rec, finished)
    check_failures(spec, rec)
    if spec.baselines:  # a baseline that failed, or recipes of the local executor that sampled the schedule
        run_baselines(spec, missing_baselines(store, spec.name), rec, cache_dir, address)
        from study.gain_tables import refresh_gains
        from study.stats import PairingError

        try:
            refresh_gains(store, spec.name)
        except PairingError as err:  # its baseline failed, retries and second run included
            raise StudyError(f"{err}: 'study resume {spec.name}' runs it again (the trials are stored)") from None


class BaselineQueue:
    """The matched baselines still to run in the Ray pool: the spec's own, then one for each recipe
    whose student or schedule has no stored (or queued) baseline yet."""

    def __init__(self, base, seeds: list[int], todo: list, stored: set[str] = frozenset()):
        self.base, self.seeds, self.todo = base, seeds, list(todo)
        self.known: set[str] = {c.config_hash() for c in todo} | set(stored)  # queued, or stored by this engine

    def for_recipe(self, params: dict) -> None:
        from mmpkd_core import baseline_config

        for seed in ([params["seed"]] if "seed" in params else self.seeds):
            b = baseline_config(self.base.with_params({**params, "seed": seed}))
            h = b.config_hash()
            if h not in self.known:
                self.known.add(h)
                self.todo.append(b)


def baselines_to_run(configs: list, rec: Recorder) -> list:
    """The baselines among ``configs`` not yet stored by this science version (by any study in this
    database), each said once."""
    from mmpkd_core.version import SCIENCE_VERSION, describe

    done = rec.store.completed_baselines(SCIENCE_VERSION)
    todo = [c for c in {c.config_hash(): c for c in configs}.values()
            if SCIENCE_VERSION not in done.get(c.config_hash(), ())]
    for c in todo:
        for v in sorted(done.get(c.config_hash(), ()), key=str):
            rec.say(f"baseline for seed {c.seed} made by {describe(v)}; this engine is science version "
                    f"{SCIENCE_VERSION}: running it again")
    if configs:
        rec.say(f"baselines: running {len(todo)} (reused: {len(configs) - len(todo)})" if todo else
                f"baselines: {len(configs)} reused from the database")
    return todo


def _prepare_beside_ray(spec: StudySpec, base, cache_dir: str, say, address: str | None, session: ExitStack) -> str:
    """``prepare``; under Ray, in a thread while this one starts Ray, so that neither start waits for the
    other (Ray's start, about 3-7 s, hides behind the data and the teachers' fits of a cold cache). The Ray
    session enters ``session``, the caller's, which closes it. (Warming a worker per slot with the trial's
    imports was measured and dropped: Ray 2.60 starts Tune's trial actors in new processes, not in the
    workers left idle by tasks.)"""
    if spec.executor.kind != "ray":
        return prepare(spec, base, cache_dir, say)
    import threading

    from study.ray_executor import ray_session

    done: dict = {}

    def run() -> None:
        try:
            done["subset"] = prepare(spec, base, cache_dir, say)
        except BaseException as err:  # raised again in this thread below
            done["error"] = err

    worker = threading.Thread(target=run, name="prepare", daemon=True)  # daemon: Ctrl-C does not wait for it
    worker.start()
    session.enter_context(ray_session(spec, address))
    worker.join()
    if "error" in done:
        raise done["error"]
    return done["subset"]


def missing_baselines(store: Store, study: str) -> list:
    from mmpkd_core import TrialConfig, baseline_config

    rows = store.con.execute("""
        SELECT DISTINCT t.config_json FROM trials t
        WHERE t.study = ? AND NOT t.is_baseline AND NOT EXISTS
              (SELECT 1 FROM trials b WHERE b.is_baseline AND b.status = 'completed' AND b.config_hash = t.baseline_key
               AND b.science_version IS NOT DISTINCT FROM t.science_version)""", [study]).fetchall()
    configs = {}
    for (cfg_json,) in rows:
        import json

        b = baseline_config(TrialConfig.from_dict(json.loads(cfg_json)))
        configs[b.config_hash()] = b
    return list(configs.values())


def run_baselines(spec: StudySpec, configs: list, rec: Recorder, cache_dir: str, address: str | None) -> None:
    """Run the baselines not yet stored (by any study in this database)."""
    todo = baselines_to_run(configs, rec)
    if not todo:
        return
    if spec.executor.kind == "ray":
        from study.ray_executor import run_ray

        run_ray(spec, rec.base, rec, cache_dir, address, baselines=BaselineQueue(rec.base, [], todo), recipes=False,
                name=f"{spec.name}-baselines")
        return
    from mmpkd_core import run_trial

    for i, cfg in enumerate(todo):
        key = f"baseline-{i}"
        rec.start(key, {}, baseline_of=cfg)
        try:
            result = run_trial(cfg, lambda row: rec.epoch(key, row))
        except Exception as err:
            rec.finish(key, "failed", error=error_text(err))
            continue
        rec.finish(key, "completed", [result.payload()])


def summarize(store: Store, study: str, wall: float, mode: str) -> Outcome:
    counts = dict(store.con.execute(
        "SELECT status, count(*) FROM trials WHERE study = ? AND NOT is_baseline GROUP BY status ORDER BY status",
        [study]).fetchall())
    order = "DESC" if mode == "max" else "ASC"
    row = store.con.execute(
        f"SELECT number, any_value(params_json), avg(val_objective) AS v, avg(test_objective), avg(test_auroc) "
        f"FROM trials WHERE study = ? AND status = 'completed' AND NOT is_baseline GROUP BY number "
        f"ORDER BY v {order} NULLS LAST LIMIT 1", [study]).fetchone()
    keys = ["recipe", "params", "val_objective", "test_objective", "test_auroc"]
    best = None if row is None else dict(zip(keys, row))
    return Outcome(study, counts, best, wall)


def run_local(spec: StudySpec, base, rec: Recorder, finished: dict | None = None) -> None:
    """The same recipes in this process with plain Optuna: seeded TPE asked in the same fixed batches
    as the Ray executor (so both sample the same sequence under FIFO), successive halving."""
    import optuna

    from mmpkd_core import run_recipe
    from study.space import suggest

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=min(spec.executor.grace_period, spec.student.epochs))
              if spec.scheduler() == "asha" else optuna.pruners.NopPruner())
    ostudy = optuna.create_study(direction="maximize" if spec.objective.mode == "max" else "minimize",
                                 sampler=sampler(spec), pruner=pruner)
    for recipe in spec.recipes or []:  # a fixed design: its recipes, in order
        ostudy.enqueue_trial(recipe)
    dims, ex = spec.dims(), spec.executor
    State = optuna.trial.TrialState

    def run_one(trial) -> tuple:
        params = suggest(trial, dims)
        if trial.number in (finished or {}):  # resuming: the sampler replays; the stored result is told
            done = finished[trial.number]
            check_replay(trial.number, params, done["params"])
            state = {"completed": State.COMPLETE, "pruned": State.PRUNED, "failed": State.FAIL}[done["status"]]
            # the pruner's rungs get the stored epochs, asked as the run asked them: after every epoch report
            # but a completed recipe's last, so that the recipes still to run are judged against the same rungs
            curve = done.get("epochs", [])
            for i, (epoch, value) in enumerate(curve):
                trial.report(value, epoch)
                if not (state == State.COMPLETE and i == len(curve) - 1):
                    trial.should_prune()
            return (done["value"] if state == State.COMPLETE else None), state
        key = str(trial.number)
        rec.start(key, params, number=trial.number)

        def report(row: dict) -> None:
            rec.epoch(key, row)
            trial.report(row["val_objective"], row["epoch"])
            if "results" not in row and trial.should_prune():
                raise optuna.TrialPruned()

        try:
            results = run_recipe(base.with_params(params), [params["seed"]] if "seed" in params else spec.seed_list(),
                                 report)
        except optuna.TrialPruned:
            rec.finish(key, "pruned", params=params)
            return None, State.PRUNED
        except Exception as err:  # a failing trial must not sink the study
            rec.finish(key, "failed", error=error_text(err), params=params)
            return None, State.FAIL
        rec.finish(key, "completed", [r.payload() for r in results], params=params)
        return sum(r.val_objective for r in results) / len(results), State.COMPLETE

    for start in range(0, ex.trials, ex.sample_batch):
        batch = [ostudy.ask() for _ in range(min(ex.sample_batch, ex.trials - start))]
        outcomes = []
        for trial in batch:
            outcomes.append(run_one(trial))
            check_failures(spec, rec)
        for trial, (value, state) in zip(batch, outcomes):  # told in the order asked, after the whole batch
            ostudy.tell(trial, value, state=state)
