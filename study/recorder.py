"""The driver's record of a running study: every trial event of either executor goes through one
``Recorder`` into the store, the trackers and the progress line."""
from __future__ import annotations

import time

from study.errors import StudyError
from study.spec import StudySpec
from study.store import Store
from study.tracking import Trackers


class TooManyFailures(StudyError):
    pass


def check_failures(spec: StudySpec, rec: "Recorder") -> None:
    limit = spec.executor.max_failures
    if limit is not None and len(rec.failed) > limit:
        raise TooManyFailures(f"study '{spec.name}' stopped: {len(rec.failed)} trials failed (executor.max_failures "
                              f"{limit}); last error: {rec.failed[-1]}. Finished trials are stored.")


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
        # key -> the seconds its worker had spent at its last report (``elapsed_seconds``), and in attempts
        # before a retry: a trial stopped before its result costs what it computed, on the clock that
        # measures a completed trial's ``trial_seconds`` (the worker's start-up, its imports, is not in it)
        self.elapsed: dict[str, float] = {}
        self.spent: dict[str, float] = {}
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
            self.show()
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
        self.show()

    def retry(self, key: str, cause: str) -> None:
        """The executor runs a trial again from its first epoch (its worker process or node died): the
        same rows, none of the dead attempt's epochs, one line naming the cause."""
        rows = self.rows.get(key, {})
        for tid in rows.values():
            self.epochs[tid] = []
        if key in self.elapsed:
            self.spent[key] = self.spent.get(key, 0.0) + self.elapsed.pop(key)
        self.retries += 1
        what = (f"baseline seed {next(iter(rows), '?')}" if key in self.baseline_keys
                else f"trial {', '.join(rows.values())}")
        self.say(f"{what}: {cause}: running it again from epoch 1")

    def epoch(self, key: str, row: dict) -> None:
        self.store.poll()  # a change that the pace held back is published here
        if "epoch" not in row:  # a worker's error report, not an epoch
            return
        if row.get("elapsed_seconds") is not None:
            self.elapsed[key] = float(row["elapsed_seconds"])
        for seed, tid in self.rows[key].items():
            per_seed = row.get("per_seed", {}).get(str(seed), row)
            self.epochs[tid].append({k: v for k, v in per_seed.items() if k not in ("result", "results", "per_seed")})
        self.trackers.epoch(self.rows[key], row)

    def finish(self, key: str, status: str, results: list[dict] | None = None, error: str | None = None,
               params: dict | None = None) -> None:
        by_seed = {r["seed"]: r for r in results or []}
        rows = self.rows.pop(key)
        # a trial that leaves no result (pruned, failed) still cost its slot, shared between the seeds it
        # trained in lockstep: its worker's seconds up to its last report (a pruned trial stops there), or
        # the driver's wall time from its start to its end where the worker reported none or then failed
        wall = time.perf_counter() - self.started.pop(key, time.perf_counter())
        worker = self.spent.pop(key, 0.0) + self.elapsed.pop(key, 0.0)
        cost = (worker if status == "pruned" and worker > 0 else wall) / max(1, len(rows))
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
        self.show()

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

    def show(self) -> None:
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
