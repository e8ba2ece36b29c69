"""The local executor: the study's trials in this process, one at a time, with plain Optuna (seeded
TPE asked in the same fixed batches as the Ray executor, the same ASHA rule); for debugging, and for a
machine without Ray."""
from __future__ import annotations

from study.errors import error_text
from study.executor import Executor
from study.recorder import Recorder, check_failures
from study.sampling import check_replay, results_before, sampler
from study.spec import StudySpec


class LocalExecutor(Executor):
    kind = "local"

    def slots(self) -> int:
        return 1

    def run(self, rec: Recorder, finished: dict, baselines=None) -> None:
        if baselines is not None:  # one trial at a time: the baselines first
            todo, baselines.todo = baselines.todo, []
            self.run_baselines(rec, todo)
        run_local(self.spec, self.base, rec, finished)

    def run_baselines(self, rec: Recorder, configs: list) -> None:
        from mmpkd_core import run_trial

        for i, cfg in enumerate(configs):
            key = f"baseline-{i}"
            rec.start(key, {}, baseline_of=cfg)
            try:
                result = run_trial(cfg, lambda row: rec.epoch(key, row))
            except Exception as err:
                rec.finish(key, "failed", error=error_text(err))
                continue
            rec.finish(key, "completed", [result.payload()])


def run_local(spec: StudySpec, base, rec: Recorder, finished: dict | None = None) -> None:
    """The same recipes in this process with plain Optuna: seeded TPE asked in the same fixed batches
    as the Ray executor, told the same results before each (``executor.sample_lag``), so that both sample
    the same sequence under FIFO; ASHA by the Ray executor's rule (``study.asha``), so that both stop the
    same recipes at the same epochs when the Ray executor runs one recipe at a time."""
    import optuna

    from mmpkd_core import run_recipe
    from study.asha import AshaPruner
    from study.space import suggest

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = (AshaPruner(min(spec.executor.grace_period, spec.student.epochs), spec.student.epochs, spec.objective.mode)
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

    ran: list[tuple] = []  # (trial, (value, state)) in the order asked
    told = 0

    def tell_through(count: int) -> None:  # results are told in the order asked, whole batches at a time
        nonlocal told
        for trial, (value, state) in ran[told:count]:
            ostudy.tell(trial, value, state=state)
        told = max(told, count)

    for start in range(0, ex.trials, ex.sample_batch):
        tell_through(results_before(start, ex.sample_batch, ex.sample_lag))
        batch = [ostudy.ask() for _ in range(min(ex.sample_batch, ex.trials - start))]
        for trial in batch:
            ran.append((trial, run_one(trial)))
            check_failures(spec, rec)
    tell_through(len(ran))
