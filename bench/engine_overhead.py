"""Engine overhead: start-up, slot use, caches and ASHA, measured in one process:

1. start-up, part by part: Ray's start, Tune's imports, a worker's start-up with torch and the engine imported (first
   call on a new worker, then again on the same worker), data generation and teacher fits (once per
   cache: each teacher alone, then the data and every teacher as a study prepares them, the teachers
   beside each other), and a trial's loading of the data and teacher outputs from the cache;
2. the default study (search_spaces/ddsm.yaml, as `make run` runs it) on Ray from a cold cache: wall
   time, slot utilisation (trial seconds of every trial, pruned and failed included, over slots x
   wall time) and each trial's start-up as the driver sees it (its time from start to end in the
   driver less the seconds the worker measured); then the same study with the local executor and on
   Ray again, both on the warm cache: the Ray / local wall-time ratio (2 slots against 1) and what a
   second study on the same data prepared, fitted and ran again; the same two under FIFO, where both
   executors train the same recipes for every epoch (ASHA, one rule for both, stops different recipes
   when two run at once); and the spec with ``executor.sample_lag: 1`` (a batch sampled while the one
   before still runs), locally and on Ray with a warm cache, and on Ray from a cold cache and a new
   database (its baseline run again);
3. ASHA against FIFO on a smaller spec: trial-epochs spent and the best validation objective reached.

    python bench/engine_overhead.py
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import yaml

from mmpkd_core.data.base import PREPARED_COUNT
from mmpkd_core.teachers.base import FIT_COUNT
from study.recorder import Recorder
from study.runner import executor_for, run_study
from study.load import resolve_real_domain, spec_from_dict
from study.trial_config import base_config
from study.store import Store


def default_spec(name: str, kind: str, scheduler: str | None = None, lag: int = 0):
    raw, _ = resolve_real_domain(yaml.safe_load(open("search_spaces/ddsm.yaml")))  # no data.root: the stand-in
    raw.update(name=name)
    raw["executor"] = {**raw["executor"], "kind": kind, **({"scheduler": scheduler} if scheduler else {}),
                       **({"sample_lag": lag} if lag else {})}
    return spec_from_dict(raw)


def small_spec(name: str, scheduler: str, trials: int = 9):
    raw, _ = resolve_real_domain(yaml.safe_load(open("search_spaces/ddsm.yaml")))
    raw.update(name=name, data={**raw["data"], "n_train": 1000, "n_val": 100, "n_test": 100})
    raw["student"] = {**raw["student"], "epochs": 6}
    raw["executor"] = {**raw["executor"], "trials": trials, "scheduler": scheduler, "grace_period": 2}
    return spec_from_dict(raw)


def startup_parts(cache: str) -> dict:
    """Ray's start, a worker's imports (first call, then the same worker again), data and teachers."""
    import ray

    from study.ray_executor import ray_session

    spec = default_spec("start-up", "ray")
    out = {}
    t0 = time.perf_counter()
    with ray_session(spec, None):
        out["ray"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        executor_for(spec, None, cache).preload()  # in a study: beside Ray's start, in the preparing thread
        out["preload"] = time.perf_counter() - t0

        @ray.remote(num_cpus=1)
        class Worker:  # a worker process as Tune's reused trial actor is: imports once, then runs trials
            def start(self) -> tuple[float, int]:
                t = time.perf_counter()
                import mmpkd_core.trial  # noqa: F401 -- torch, timm and the engine, as a trial imports them
                return time.perf_counter() - t, os.getpid()

        t0 = time.perf_counter()
        w = Worker.remote()
        first, pid = ray.get(w.start.remote())
        out["worker_first_wall"] = time.perf_counter() - t0  # process start, then imports
        out["worker_first_imports"] = first
        again, pid2 = ray.get(w.start.remote())
        out["worker_again"] = again if pid2 == pid else float("nan")
        ray.kill(w)
    base = base_config(spec, cache)
    from mmpkd_core.data import load_domain
    from mmpkd_core.teachers import teacher_outputs
    from mmpkd_core.trial import pick_device, trial_inputs
    from study.prepare import prepare, torch_threads

    t0 = time.perf_counter()
    data = load_domain(base.domain, base.data, cache)
    out["data"] = time.perf_counter() - t0
    opts = json.loads(base.teacher_options)
    for name in spec.dims()["teacher"].choices:
        t0 = time.perf_counter()
        with torch_threads(base.threads):
            teacher_outputs(name, base.domain, base.data, 0, cache, opts)
        out[f"teacher {name}"] = time.perf_counter() - t0
    t0 = time.perf_counter()  # as a study prepares: the teachers beside each other, in a cache of their own
    prepare(spec, base, os.path.join(cache, "side-by-side"), executor_for(spec, base, cache).node_slots(),
            say=lambda *_: None)
    out["prepare"] = time.perf_counter() - t0
    for label in ("load_first", "load_again"):
        t0 = time.perf_counter()
        data = load_domain(base.domain, base.data, cache)
        t = teacher_outputs("mlp", base.domain, base.data, 0, cache, opts)
        trial_inputs(data, t, pick_device())
        out[label] = time.perf_counter() - t0
    return out


def run(store: Store, s, cache: str) -> dict:
    """One study; with each trial's start-up as the driver sees it (driver time less worker time)."""
    seen: dict[str, float] = {}
    start, finish = Recorder.start, Recorder.finish

    def timed_start(self, key, *a, **k):
        seen[key] = time.perf_counter()
        return start(self, key, *a, **k)

    def timed_finish(self, key, status, results=None, *a, **k):
        if status == "completed" and results:
            seen[key] = (time.perf_counter() - seen[key]) - sum(r["trial_seconds"] for r in results)
        else:
            seen.pop(key, None)
        return finish(self, key, status, results, *a, **k)

    Recorder.start, Recorder.finish = timed_start, timed_finish
    before = (PREPARED_COUNT["generated"], FIT_COUNT["fitted"])
    try:
        t0 = time.perf_counter()
        run_study(s, store, cache, say=lambda *_: None)
        wall = time.perf_counter() - t0
    finally:
        Recorder.start, Recorder.finish = start, finish
    util, slot_s = store.con.execute("SELECT slot_utilisation, slot_seconds FROM studies WHERE name = ?",
                                     [s.name]).fetchone()
    row = store.con.execute("SELECT sum(epochs_done), count(*) FILTER (WHERE is_baseline),"
                            " max(val_objective) FILTER (WHERE NOT is_baseline) FROM trials WHERE study = ?",
                            [s.name]).fetchone()
    gaps = sorted(v for v in seen.values() if isinstance(v, float) and v < 1e6)
    return {"wall": wall, "util": util, "slot_s": slot_s, "epochs": row[0], "baselines": row[1], "best": row[2],
            "prepared": PREPARED_COUNT["generated"] - before[0], "fitted": FIT_COUNT["fitted"] - before[1],
            "gaps": gaps, "slots": executor_for(s, None, cache).slots()}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        parts = startup_parts(os.path.join(tmp, "parts"))
        cache = os.path.join(tmp, "cache")
        store = Store(os.path.join(tmp, "b.duckdb"))
        cold = run(store, default_spec("ray-cold", "ray"), cache)
        local = run(store, default_spec("local-warm", "local"), cache)
        warm = run(store, default_spec("ray-warm", "ray"), cache)
        local_fifo = run(store, default_spec("local-fifo", "local", "fifo"), cache)
        ray_fifo = run(store, default_spec("ray-fifo", "ray", "fifo"), cache)
        local_lag = run(store, default_spec("local-lag", "local", lag=1), cache)
        warm_lag = run(store, default_spec("ray-lag", "ray", lag=1), cache)
        cold_store = Store(os.path.join(tmp, "lag.duckdb"))  # a new database and cache: the baseline runs again
        cold_lag = run(cold_store, default_spec("ray-cold-lag", "ray", lag=1), os.path.join(tmp, "cache-lag"))
        cold_store.close()
        asha = run(store, small_spec("asha", "asha"), cache)
        fifo = run(store, small_spec("fifo", "fifo"), cache)
        store.close()
    print("# start-up, part by part (search_spaces/ddsm.yaml's stand-in: 2,000 images at 48 px)")
    print("| part | seconds | paid |\n|---|---|---|")
    print(f"| Ray's start (local instance) | {parts['ray']:.1f} | once per study |")
    print(f"| Tune's imports in the driver (its scheduler, Optuna searcher and the logger integrations its fit "
          f"imports) | {parts['preload']:.1f} | once per study, beside Ray's start |")
    print(f"| a new worker: process start and imports (torch, timm, the engine) | {parts['worker_first_wall']:.1f} "
          f"(imports {parts['worker_first_imports']:.1f}) | once per worker: trials reuse it |")
    print(f"| the same imports again on that worker | {parts['worker_again']:.3f} | |")
    print(f"| data generation | {parts['data']:.1f} | once per cache |")
    for k in (k for k in parts if k.startswith("teacher ")):
        print(f"| {k} fit (5-fold cross-fitting, one thread), alone | {parts[k]:.1f} | once per cache |")
    print(f"| data and every teacher as a study prepares them (teachers beside each other) | {parts['prepare']:.1f} "
          "| once per cache, beside Ray's start |")
    print(f"| a trial's loading of data and teacher outputs from the cache | {parts['load_first']:.3f} first, "
          f"{parts['load_again']:.3f} again | per trial |")
    print("\n# the default study (search_spaces/ddsm.yaml: 8 recipes, ASHA, 2 slots on Ray)")
    print("| run | wall s | trial seconds | slot utilisation | "
          "start-up per trial as the driver sees it: median / max s |")
    print("|---|---|---|---|---|")
    for name, r in (("Ray, cold cache (as `make run`)", cold), ("local executor, warm cache", local),
                    ("Ray, warm cache", warm), ("local executor, warm cache, FIFO", local_fifo),
                    ("Ray, warm cache, FIFO", ray_fifo), ("Ray, cold cache, sample_lag 1", cold_lag),
                    ("local executor, warm cache, sample_lag 1", local_lag),
                    ("Ray, warm cache, sample_lag 1", warm_lag)):
        g = r["gaps"]
        gap = f"{g[len(g) // 2]:.1f} / {g[-1]:.1f}" if g else "-"
        print(f"| {name} | {r['wall']:.1f} | {r['slot_s']:.1f} | {r['util']:.2f} ({r['slots']} slot(s)) | {gap} |")
    print(f"| Ray / local wall time, warm cache, ASHA (the spec's) | {warm['wall'] / local['wall']:.2f} "
          "(target <= 0.6) | | | |")
    print(f"| Ray / local wall time, warm cache, FIFO (the same 8 recipes, every epoch) | "
          f"{ray_fifo['wall'] / local_fifo['wall']:.2f} | | | |")
    print(f"| Ray / local wall time, warm cache, ASHA, sample_lag 1 | {warm_lag['wall'] / local_lag['wall']:.2f} "
          "| | | |")
    print("\n# caches: the second and third studies on the same domain and data")
    print("| | local, warm | Ray, warm |\n|---|---|---|")
    print(f"| data preparations | {local['prepared']} | {warm['prepared']} |")
    print(f"| teacher fits | {local['fitted']} | {warm['fitted']} |")
    print(f"| baselines run | {local['baselines']} | {warm['baselines']} |")
    print("\n# ASHA against FIFO, 9 trials of 6 epochs, 1,000 training images")
    print("| scheduler | trial-epochs spent | best validation objective | wall s |\n|---|---|---|---|")
    for name, r in (("ASHA", asha), ("FIFO", fifo)):
        print(f"| {name} | {r['epochs']} | {r['best']:.3f} | {r['wall']:.1f} |")


if __name__ == "__main__":
    main()
