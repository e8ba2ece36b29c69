"""What the sampler is and in which batches it is asked: the same for both executors, so that a
study samples the same sequence of recipes whatever runs it, and a resumed study replays it."""
from __future__ import annotations

import json

from study.errors import StudyError
from study.spec import StudySpec


def check_replay(number: int, sampled: dict, stored: dict) -> None:
    if json.loads(json.dumps(sampled)) != stored:
        raise StudyError(f"cannot resume: the sampler no longer reproduces recipe #{number} "
                         f"(stored {stored}, sampled {sampled}); was the spec or the engine changed? "
                         "Use --replace to start over.")


def startup_trials(spec: StudySpec) -> int:
    """TPE's start-up trials: sampled at random, whatever the results told so far."""
    return min(10, max(2, spec.executor.trials // 2))


def first_batch(spec: StudySpec) -> int:
    """The recipes handed out before any result is told: a fixed design's every recipe, or TPE's
    start-up trials rounded up to whole batches (these are drawn at random, so telling results
    between them would change nothing: the sequence is the one batches of ``sample_batch`` give)."""
    ex = spec.executor
    if spec.recipes is not None:
        return max(ex.sample_batch, ex.trials)
    if ex.sampler == "tpe":
        return -(-startup_trials(spec) // ex.sample_batch) * ex.sample_batch
    return ex.sample_batch


def results_before(n: int, batch: int, lag: int) -> int:
    """How many recipes, in order, have finished and been told to the sampler before recipe ``n``
    (numbered from 0) is sampled: every batch of ``batch`` up to ``lag`` + 1 batches before its own
    (``executor.sample_lag``). Both executors follow it, so that they sample the same sequence."""
    return max(0, (n // batch - lag) * batch)


def sampler(spec: StudySpec):
    import optuna

    if spec.recipes is not None:  # a fixed design enqueues every recipe; nothing is sampled
        return optuna.samplers.RandomSampler(seed=spec.executor.seed)
    if spec.executor.sampler == "grid":
        space = {k: v.choices for k, v in spec.dims().items()}
        return optuna.samplers.GridSampler(space, seed=spec.executor.seed)
    return optuna.samplers.TPESampler(seed=spec.executor.seed, n_startup_trials=startup_trials(spec))
