"""Running a study, phase by phase: prepare the data and teachers once (beside the executor's start),
run the matched baselines and the sampled recipes, then the baselines the sweep still lacks, then the
gains. The executor (``study.executor``) decides where and how the trials run.

A *recipe* is one sampled point of the search space; it is trained once per seed of ``spec.seeds``,
in lockstep, and each seed is stored as its own row of ``trials``, paired with its own baseline
(``baseline_key``).
"""
from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from study.baselines import BaselineQueue, baselines_to_run, missing_baselines
from study.errors import StudyError
from study.executor import Executor
from study.local_executor import LocalExecutor
from study.prepare import device_line, prepare
from study.ray_executor import RayExecutor
from study.recorder import Recorder, TooManyFailures, check_failures
from study.spec import StudySpec
from study.store import Store
from study.tracking import check_tracking, open_trackers
from study.trial_config import base_config

EXECUTORS: dict[str, type[Executor]] = {e.kind: e for e in (RayExecutor, LocalExecutor)}


@dataclass
class Outcome:
    study: str
    counts: dict
    best: dict | None
    wall_seconds: float


def executor_for(spec: StudySpec, base, cache_dir: str, address: str | None = None) -> Executor:
    return EXECUTORS[spec.executor.kind](spec, base, cache_dir, address)


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
    executor = executor_for(spec, base, cache_dir, address)
    check_tracking(spec, cache_dir, say)  # a tracking URI that cannot be opened stops the study here
    with ExitStack() as session:  # the executor's session (Ray), started beside the preparation, held throughout
        subset = prepare_beside(executor, say, session)
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
        rec.gains = spec.baselines and executor.gains_while_running
        rec.show()
        status = "failed"
        try:
            run_phases(executor, rec, store, finished)
            status = "completed"
        except TooManyFailures:
            status = "stopped"
            raise
        finally:
            session.close()  # the executor's shutdown is part of the study's wall time
            before = (store.study_row(spec.name)["wall_seconds"] or 0.0) if resume else 0.0
            wall = time.perf_counter() - t0 + before
            store.finish_study(spec.name, status, wall, slots=executor.slots())
    return summarize(store, spec.name, wall, spec.objective.mode)


def prepare_beside(executor: Executor, say, session: ExitStack) -> str:
    """``prepare``, and the executor's session entered into ``session`` (the caller's, which closes it).
    A session that takes seconds to start (Ray's, about 3-7 s) starts in this thread while another one
    prepares, so that it hides behind the data and the teachers' fits of a cold cache; what the executor's
    run imports (``Executor.preload``) is imported by whichever thread is free first: behind the
    session's start on a warm cache, beside the fits on a cold one. Otherwise ``prepare`` runs here
    first. (Warming a Ray worker per slot with the trial's imports was measured and dropped: Tune gives
    its trial actors a runtime environment of their own (``PL_DISABLE_FORK``), so Ray starts them in new
    processes, never in idle workers.)"""
    def run() -> str:
        return prepare(executor.spec, executor.base, executor.cache_dir, executor.node_slots(), say)

    if not executor.slow_session:
        subset = run()
        session.enter_context(executor.session())
        return subset
    done: dict = {}

    def in_thread() -> None:  # imports are done once: the thread that comes second finds them there
        try:
            done["subset"] = run()
            executor.preload()
        except BaseException as err:  # raised again in this thread below
            done["error"] = err

    worker = threading.Thread(target=in_thread, name="prepare", daemon=True)
    worker.start()
    session.enter_context(executor.session())
    if worker.is_alive():  # still preparing (a cold cache): the imports go here, beside it
        executor.preload()
    worker.join()
    if "error" in done:
        raise done["error"]
    return done["subset"]


def run_phases(executor: Executor, rec: Recorder, store: Store, finished: dict) -> None:
    """The matched baselines and the sweep (the executor schedules them: side by side in Ray's pool, the
    baselines first one trial at a time), then any baselines the sweep still needs, then the gains."""
    from mmpkd_core import baseline_config

    spec, base = executor.spec, executor.base
    queue = None
    if spec.baselines:
        own = [baseline_config(base.with_params({"seed": s})) for s in spec.seed_list()]
        queue = BaselineQueue(base, spec.seed_list(), baselines_to_run(own, store, rec.say), store.current_baselines())
    executor.run(rec, finished, queue)
    check_failures(spec, rec)
    if spec.baselines:  # a baseline that failed, or recipes of the local executor that sampled the schedule
        todo = baselines_to_run(missing_baselines(store, spec.name), store, rec.say)
        if todo:
            executor.run_baselines(rec, todo)
        from study.gain_tables import refresh_gains
        from study.stats import PairingError

        try:
            refresh_gains(store, spec.name)
        except PairingError as err:  # its baseline failed, retries and second run included
            raise StudyError(f"{err}: 'study resume {spec.name}' runs it again (the trials are stored)") from None


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
