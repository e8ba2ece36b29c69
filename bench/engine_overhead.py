"""Engine overhead, caches and ASHA, measured on one study run several ways in one process:

1. the default study's recipe dimensions (search_spaces/ddsm.yaml, smaller data and schedule so that
   the whole benchmark fits in minutes), run with the Ray executor and with the local one:
   overhead = 1 - (sum of trial compute) / (wall time x trials running at once);
2. the same study again under a new name in the same database: data preparations, teacher fits and
   baseline runs it needed (counted, not timed);
3. ASHA against FIFO on the same spec: trial-epochs spent and the best validation objective reached.

    python bench/engine_overhead.py
"""
from __future__ import annotations

import os
import tempfile
import time

import yaml

from mmpkd_core.data.base import PREPARED_COUNT
from mmpkd_core.teachers.base import FIT_COUNT
from study.executor import run_study
from study.spec import resolve_real_domain, spec_from_dict
from study.store import Store


def spec(name: str, kind: str, scheduler: str = "fifo", trials: int = 6):
    raw, _ = resolve_real_domain(yaml.safe_load(open("search_spaces/ddsm.yaml")))  # no data.root: the stand-in
    raw.update(name=name, data={**raw["data"], "n_train": 1000, "n_val": 100, "n_test": 100})
    raw["student"] = {**raw["student"], "epochs": 6}
    raw["executor"] = {**raw["executor"], "kind": kind, "trials": trials, "scheduler": scheduler, "grace_period": 2}
    return spec_from_dict(raw)


def run(store: Store, s, cache: str) -> dict:
    t0 = time.perf_counter()
    run_study(s, store, cache, say=lambda *_: None)
    wall = time.perf_counter() - t0
    row = store.con.execute("SELECT sum(trial_seconds), sum(epochs_done), count(*) FILTER (WHERE is_baseline),"
                            " max(val_objective) FILTER (WHERE NOT is_baseline) FROM trials WHERE study = ?",
                            [s.name]).fetchone()
    busy = min(s.executor.max_concurrent, s.executor.trials) if s.executor.kind == "ray" else 1
    return {"wall": wall, "compute": row[0] or 0.0, "epochs": row[1], "baselines": row[2], "best": row[3],
            "overhead": 1 - (row[0] or 0.0) / (wall * busy)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        store = Store(os.path.join(tmp, "b.duckdb"))
        warm = run(store, spec("warm-up", "local", trials=1), cache)  # data, teachers and the baseline, once
        ray = run(store, spec("ray", "ray"), cache)
        local = run(store, spec("local", "local"), cache)
        before = (PREPARED_COUNT["generated"], FIT_COUNT["fitted"])
        again = run(store, spec("again", "ray"), cache)
        counted = (PREPARED_COUNT["generated"] - before[0], FIT_COUNT["fitted"] - before[1], again["baselines"])
        asha = run(store, spec("asha", "ray", scheduler="asha", trials=9), cache)
        fifo = run(store, spec("fifo", "ray", scheduler="fifo", trials=9), cache)
        store.close()
    print("# engine overhead: ddsm.yaml dimensions, 1,000 training images, 6 epochs, 6 trials, 2 at once (Ray)")
    print("| run | wall s | sum of trial compute s | overhead |\n|---|---|---|---|")
    print(f"| Ray executor | {ray['wall']:.1f} | {ray['compute']:.1f} | {ray['overhead']:.1%} (target <= 10%) |")
    print(f"| local executor (sequential) | {local['wall']:.1f} | {local['compute']:.1f} | {local['overhead']:.1%} |")
    print(f"| Ray / local wall time | {ray['wall'] / local['wall']:.2f} | | |")
    print(f"\n(warm-up run that prepared data, fitted teachers and ran the baseline: {warm['wall']:.1f} s)")
    print("\n# caches: a second study on the same domain and data")
    print(f"| data preparations | {counted[0]} |\n|---|---|\n| teacher fits | {counted[1]} |\n"
          f"| baselines run | {counted[2]} |")
    print("\n# ASHA against FIFO, 9 trials of 6 epochs")
    print("| scheduler | trial-epochs spent | best validation objective | wall s |\n|---|---|---|---|")
    for name, r in (("ASHA", asha), ("FIFO", fifo)):
        print(f"| {name} | {r['epochs']} | {r['best']:.3f} | {r['wall']:.1f} |")


if __name__ == "__main__":
    main()
