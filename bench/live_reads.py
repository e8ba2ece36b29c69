"""Live reads: what publishing the snapshot costs a running study at 1,000 stored trials, how stale
the published state gets, and how fast the read side answers.

1. A store holding a simulated study of 1,000 trials x 5 methods x 7 metrics x 500 images (the
   size of bench/store_scale.py), then a driver that records more trials through ``Store`` as
   ``study run`` does: each trial waits ``--trial-seconds`` for its (stand-in) worker, polling
   the store at each of 5 epoch reports, then writes its 5 x 7 x 500 scores in one transaction.
   The same trials run with publishing off, then on, in the same process, each on its own copy of
   the database; the slowdown is the ratio of their wall times. Trials of 2 s are far shorter than
   real ones (the default study's take 15-60 s), so the budget binds: a snapshot goes out every
   copy-time / 2% seconds rather than after each trial.
2. ``study status`` on that database, in a fresh interpreter, as a ratio to
   ``python -c "import duckdb"`` (medians of alternating runs).

    python bench/live_reads.py [--trials 1000] [--images 500] [--extra 30] [--trial-seconds 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from study.simulate import METHODS, METRICS, simulate_study
from study.store import Store, snapshot_path


def drive(db: str, publish: bool, extra: int, images: int, trial_seconds: float, start: int) -> dict:
    rng = np.random.default_rng(0)
    ids = [f"img{i:05d}" for i in range(images)]
    cfg = {"domain": "synthetic_ddsm", "teacher": "mlp", "temperature": 2.0, "alpha": 0.5, "beta": 0.0,
           "attention_method": "rollout", "seed": 0, "student": {"lr": 1e-3, "weight_decay": 0.05, "epochs": 5}}
    store = Store(db, publish=publish)
    store.con
    opened_cost = store.publish_seconds
    stale = []  # per trial: seconds from its commit until a snapshot held it
    pending = []  # commit times of trials no snapshot holds yet
    seen = store.publishes

    def check() -> None:
        nonlocal seen, pending
        if store.publishes != seen:
            stale.extend(time.perf_counter() - c for c in pending)
            seen, pending = store.publishes, []

    t0 = time.perf_counter()
    for k in range(extra):
        tid = f"{start + k:04d}"
        store.trial_started("simulated", tid, start + k, cfg, {"teacher": "mlp"}, f"x{k}", "sim")
        epochs = []
        for e in range(1, 6):  # the worker trains; the driver polls at each epoch report
            time.sleep(trial_seconds / 5)
            store.poll()
            check()
            epochs.append({"epoch": e, "loss": 1.0, "ce": 0.5, "kd": 0.4, "feat": 0.0, "lr": 1e-3, "val_auroc": 0.8,
                           "val_objective": 0.5, "seconds": trial_seconds / 5})
        scores = {f"{m}|{k_}": rng.random(images).tolist() for m in (*METHODS, "uniform", "centre") for k_ in METRICS}
        result = {"seed": 0, "val_objective": 0.5, "test_objective": 0.5, "val_auroc": 0.9, "test_auroc": 0.9,
                  "trial_seconds": trial_seconds, "image_ids": ids, "scores": scores}
        store.trial_finished("simulated", tid, "completed", epochs, result)
        pending.append(time.perf_counter())
        check()
    wall = time.perf_counter() - t0
    stale.extend(float("inf") for _ in pending)  # left for the publish at the study's end
    out = {"wall": wall, "publishes": store.publishes, "publish_s": store.publish_seconds - opened_cost,
           "opened_cost": opened_cost, "stale": stale}
    store.close()
    return out


def clock(cmd: list[str], cwd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--extra", type=int, default=30)
    ap.add_argument("--trial-seconds", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "live.duckdb")
        simulate_study(db, trials=args.trials, images=args.images)
        os.remove(snapshot_path(db))
        size = os.path.getsize(db) / 1e6
        dbs = {}
        for mode in ("off", "on"):
            dbs[mode] = os.path.join(tmp, f"{mode}.duckdb")
            subprocess.run(["cp", db, dbs[mode]], check=True)
        runs = {"off": [], "on": []}
        for mode in ("off", "on"):  # one run each, one after the other (a run opens its store once, as a study does)
            runs[mode].append(drive(dbs[mode], mode == "on", args.extra, args.images, args.trial_seconds, args.trials))
        off = sum(r["wall"] for r in runs["off"])
        on = sum(r["wall"] for r in runs["on"])
        publishes = sum(r["publishes"] for r in runs["on"]) - len(runs["on"])  # less the one at opening
        spent = sum(r["publish_s"] for r in runs["on"])
        opened = statistics.mean(r["opened_cost"] for r in runs["on"])
        stale = [s for r in runs["on"] for s in r["stale"]]
        snap = os.path.getsize(snapshot_path(dbs["on"])) / 1e6

        studyx = os.path.join(os.path.dirname(sys.executable), "study")
        status, imp = [], []
        for _ in range(7):
            status.append(clock([studyx, "status", "--db", db], tmp))
            imp.append(clock([sys.executable, "-c", "import duckdb"], tmp))
        s_med, i_med = statistics.median(status), statistics.median(imp)

    print(f"# live reads: a store of {args.trials} trials x 5 methods x 7 metrics x {args.images} images "
          f"({size:.0f} MB), then {args.extra} more trials of {args.trial_seconds:g} s each")
    print("| figure | value | target |\n|---|---|---|")
    print(f"| driver wall, publishing off / on ({args.extra} trials each) | {off:.1f} s / {on:.1f} s | |")
    print(f"| slowdown from publishing | {100 * (on / off - 1):+.1f}% | at most 2% |")
    print(f"| snapshots published during those trials | {publishes} ({spent:.2f} s in all; one copy "
          f"at opening took {opened:.2f} s) | |")
    finite = [s for s in stale if s != float("inf")]
    late = sum(1 for s in stale if s == float("inf"))
    print(f"| a trial's commit to the snapshot that holds it | "
          f"median {statistics.median(finite) if finite else 0:.1f} s, "
          f"max {max(finite) if finite else 0:.1f} s ({late} of {len(stale)} waited for the end of their run) | "
          "one finished trial or 30 s |")
    print(f"| snapshot file | {snap:.0f} MB | |")
    print(f"| `study status` / `python -c \"import duckdb\"` (medians of 7) | {s_med:.2f} s / {i_med:.2f} s = "
          f"{s_med / i_med:.1f}x | at most 3x |")


if __name__ == "__main__":
    main()
