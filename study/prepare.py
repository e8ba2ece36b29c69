"""Before any trial: where the trials train, whether they fit in memory, and the data and teachers
prepared once in the driver (every trial reads them from the cache)."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from study.errors import StudyError
from study.spec import StudySpec


def device_line(spec: StudySpec) -> str:
    """Where the trials will train, as the driver sees it (on a cluster, each worker picks its own)."""
    import torch

    threads = max(1, int(spec.executor.resources.cpu))
    if torch.cuda.is_available() and spec.executor.resources.gpu > 0:
        return (f"{torch.cuda.get_device_name(0)} ({spec.executor.resources.gpu:g} GPU per trial, "
                f"{spec.student.precision})")
    note = " (bf16 applies on a GPU only)" if spec.student.precision == "bf16" else ""
    return f"CPU, {threads} thread(s) per trial{note}"


def prepare(spec: StudySpec, base, cache_dir: str, at_once: int, say) -> str:
    """Generate the data and fit every teacher the study can sample, once, before any trial; check that
    ``at_once`` trials fit in this node's memory. Returns the training subset in words
    (data.options.max_train), or ""."""
    from mmpkd_core.data import load_domain
    from mmpkd_core.teachers import TEACHERS, teacher_outputs

    t0 = time.perf_counter()
    data = load_domain(spec.domain, base.data, cache_dir)
    check_memory(spec, base, data, at_once, say)
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
    fits = [(str(t), int(seed)) for t in teachers for seed in seeds]
    options = json.loads(base.teacher_options)

    def fit(name: str, seed: int):
        return teacher_outputs(name, spec.domain, base.data, seed, cache_dir, options, threads=at_once)

    # teachers whose fits keep to their own state run in threads beside the others, which fit one after
    # the other in a thread of their own (they share torch's RNG); lines come in order, each once it is done
    with ThreadPoolExecutor(len(fits), thread_name_prefix="teachers") as beside, \
            ThreadPoolExecutor(1, thread_name_prefix="teachers-in-turn") as in_turn:
        done = {f: beside.submit(fit, *f) for f in fits if TEACHERS.get(f[0]).fits_in_threads}

        def fit_in_turn(name: str, seed: int):
            reference = done.get((TEACHERS.get(name).reference, seed))
            if reference is not None:  # a matched control: its reference is fitting beside it
                reference.result()
            with torch_threads(base.threads):
                return fit(name, seed)

        done |= {f: in_turn.submit(fit_in_turn, *f) for f in fits if f not in done}
        for name, seed in fits:
            out = done[(name, seed)].result()
            note = (" (a control that reads the labels: not a measure of skill)" if TEACHERS.get(name).reads_labels
                    else "")
            say(f"teacher {name} (seed {seed}): test AUROC {out.metrics['test_auroc']:.3f}{note}")
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


def check_memory(spec: StudySpec, base, data, at_once: int, say) -> None:
    """Before any training: each trial's memory (mmpkd_core.memory) times the ``at_once`` trials that run
    at once on this node, against what it has; one line naming the numbers and the knob if they cannot fit."""
    import torch

    from mmpkd_core.memory import check

    res = spec.executor.resources
    seeds = 1 if "seed" in spec.dims() else len(spec.seed_list())  # seeds of a recipe train in one process
    gpu = res.gpu if res.gpu > 0 and torch.cuda.is_available() else None
    est, problem = check(base, data, at_once, seeds, gpu_share=gpu)
    if problem:
        raise StudyError(problem)
    say(f"memory: about {est.host_mb:,.0f} MB per trial ({est.describe()}), {at_once} at once")
