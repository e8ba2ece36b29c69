"""The store's ceiling: a simulated study of 10,000 trials x 5 methods x 7 metrics x 500 images written
straight into DuckDB (the 5 methods, plus the two chance references every trial stores), then the
per-trial gains, an ablation table (``study ablate``), the HTML report (``study report``) and the
``gains_by_image`` view, each timed; the view also at 1,000 trials, where its target lies.

Then the single writer's ceiling: on the 10,000-trial file, the driver's own path from a finished
trial to the store (``Recorder.start``, an epoch report per epoch, ``Recorder.finish``: the trial's
row, 20 epochs, 24,500 per-image scores, the sampled method's 500 maps), with the live snapshot and
the running gains refresh on, paced as in a study. Trials per second it absorbs, beside the rate that
64 workers produce at a given trial time.

    python bench/store_scale.py [--trials 10000] [--view-trials 1000] [--images 500] [--writes 40]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import duckdb

from study.simulate import METHODS, METRICS, simulate_study

VIEW_SQL = ("SELECT teacher, method, avg(gain), count(*) FROM gains_by_image WHERE study = 'simulated' "
            "AND metric = 'pointing_game' GROUP BY ALL")
TABLE_SQL = ("SELECT teacher, method, avg(gain), avg(model_ci_low), avg(model_ci_high) FROM gains "
             "WHERE study = 'simulated' AND metric = 'pointing_game' GROUP BY ALL")
WORKERS = 64


def timed(con, sql: str, rounds: int = 5) -> float:
    """Median seconds of ``rounds`` runs after one that warms the cache."""
    con.execute(sql).fetchall()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def cli(*args: str, cwd: str) -> float:
    """Seconds a ``study`` command takes, as a user types it (its own process: imports included)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"study {' '.join(args)} failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return time.perf_counter() - t0


def view_at(tmp: str, trials: int, images: int) -> dict:
    db = os.path.join(tmp, f"view{trials}.duckdb")
    simulate_study(db, trials=trials, images=images)
    con = duckdb.connect(db, read_only=True)
    out = {"view": timed(con, VIEW_SQL),
           "pairs": con.execute(f"SELECT sum(c) FROM ({VIEW_SQL.replace('avg(gain), count(*)', 'count(*) AS c')})")
           .fetchone()[0]}
    con.close()
    os.remove(db)
    return out


def payload(seed: int, images: int, epochs: int, grid: int, rng: random.Random) -> dict:
    """A finished trial as a worker reports it (``TrialResult.payload``), at the benchmark's size."""
    from mmpkd_core.version import stamp

    ids = [f"img{i:05d}" for i in range(images)]
    scores = {f"{m}|{k}": [float(rng.random() < 0.5) if k == "pointing_game" else rng.random() for _ in ids]
              for m in (*METHODS, "uniform", "centre") for k in METRICS}
    return {"seed": seed, "val_objective": rng.random(), "test_objective": rng.random(), "val_auroc": 0.8,
            "test_auroc": 0.8, "image_ids": ids, "teacher_metrics": {}, "method_params": {}, "data_path": "/data",
            "scores": scores, "maps": {"rollout": [[round(rng.random(), 4) for _ in range(grid * grid)] for _ in ids]},
            "grid": [grid, grid], "epochs": [], "trial_seconds": 30.0, "gpu_mb": None, **stamp()}


def writer(db: str, writes: int, images: int) -> dict:
    """Trials per second the driver's Recorder writes into ``db``, the live snapshot and running gains on."""
    from mmpkd_core import baseline_config
    from study.recorder import Recorder
    from study.load import load_spec
    from study.store import Store
    from study.trial_config import base_config

    spec = load_spec("search_spaces/ddsm.yaml")  # the default study's student: 20 epochs
    base = base_config(spec, os.path.dirname(db))
    epochs, rng = base.student.epochs, random.Random(0)
    store = Store(db)
    store.create_study("written", spec.domain, spec.model_dump_json(), spec.spec_hash(), planned=writes)
    rec = Recorder(store, "written", base, say=lambda _: None, total=writes, seeds=[0])
    rec.gains = True  # as under Ray: the gains of finished recipes are refreshed as they finish (paced)
    rec.start("base", {}, baseline_of=baseline_config(base.with_params({"seed": 0})))
    rec.finish("base", "completed", [payload(0, images, epochs, 14, rng)])
    results = [payload(0, images, epochs, 14, rng) for _ in range(writes)]  # made before the clock starts
    epoch = {"loss": 0.5, "ce": 0.4, "kd": 0.1, "feat": 0.0, "lr": 1e-3, "val_auroc": 0.8, "val_objective": 0.3,
             "seconds": 1.0}
    per_trial = []
    t0 = time.perf_counter()
    for n, result in enumerate(results):
        t = time.perf_counter()
        params = {"teacher": "mlp", "alpha": rng.random()}
        rec.start(f"k{n}", params, number=n)
        for e in range(1, epochs + 1):
            rec.epoch(f"k{n}", {**epoch, "epoch": e})
        rec.finish(f"k{n}", "completed", [result], params=params)
        per_trial.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    out = {"rate": writes / wall, "median": statistics.median(per_trial), "max": max(per_trial),
           "publishes": store.publishes, "publish_s": store.publish_seconds, "gains_s": rec.gains_cost}
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--view-trials", type=int, default=1_000)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--writes", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = view_at(tmp, args.view_trials, args.images)
        db = os.path.join(tmp, "scale.duckdb")
        info = simulate_study(db, trials=args.trials, images=args.images)
        size = os.path.getsize(db) / 1e9
        from study.gain_tables import refresh_gains
        from study.store import Store

        store = Store(db, publish=False)
        t0 = time.perf_counter()
        n = refresh_gains(store, "simulated")
        t_gains = time.perf_counter() - t0
        store.close()
        con = duckdb.connect(db, read_only=True)
        t_view, t_table = timed(con, VIEW_SQL, rounds=3), timed(con, TABLE_SQL)
        con.close()
        t_ablate = cli("ablate", "simulated", "--db", db, "--by", "teacher,attention_method", cwd=tmp)
        t_report = cli("report", "simulated", "--db", db, "--out", os.path.join(tmp, "r.html"), cwd=tmp)
        html = os.path.getsize(os.path.join(tmp, "r.html")) / 1e6
        w = writer(db, args.writes, args.images)
    rows, scale = info["rows"], f"{args.trials:,} trials"
    print(f"# the store at scale: {scale} x 5 methods (and the 2 chance references) x 7 metrics x {args.images} "
          "images, one DuckDB file")
    print("| figure | value | target |\n|---|---|---|")
    print(f"| `gains_by_image` view, aggregate over pointing_game at {args.view_trials:,} trials "
          f"({small['pairs']:,} pairs, median of 5) | {small['view'] * 1e3:.0f} ms | < 200 ms |")
    print(f"| per-image rows at {scale} | {rows:,} | |")
    print(f"| their insert (one SQL statement) | {info['insert_localization_s']:.0f} s "
          f"({rows / info['insert_localization_s'] / 1e6:.1f} M rows/s) | |")
    print(f"| DuckDB file | {size:.2f} GB | |")
    print(f"| per-trial gains, intervals and tests ({n:,} comparisons written to `gains`) | {t_gains:.0f} s | |")
    print(f"| `study ablate --by teacher,attention_method` (seed-level inference, its own process) "
          f"| {t_ablate:.1f} s | |")
    print(f"| `study report` (its own process) | {t_report:.1f} s, {html:.1f} MB | |")
    print(f"| `gains_by_image` view, the same aggregate at {scale} (median of 3) | {t_view * 1e3:.0f} ms | |")
    print(f"| SQL aggregate over the `gains` table at {scale} | {t_table * 1e3:.0f} ms | < 200 ms |")
    print(f"\n# the single writer on that file: {args.writes} trials through the driver's Recorder, each 20 epoch "
          f"reports, 24,500 per-image scores and 500 maps, the live snapshot and the running gains refresh on")
    print("| figure | value |\n|---|---|")
    print(f"| trials written per second (the writer's ceiling) | {w['rate']:.1f} |")
    print(f"| one trial, median / max | {w['median'] * 1e3:.0f} ms / {w['max'] * 1e3:.0f} ms |")
    print(f"| snapshots published / seconds in all | {w['publishes']} / {w['publish_s']:.1f} s |")
    print(f"| the last running gains refresh | {w['gains_s']:.1f} s |")
    print(f"| a trial time at which {WORKERS} workers reach the ceiling | {WORKERS / w['rate']:.1f} s |")


if __name__ == "__main__":
    main()
