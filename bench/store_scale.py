"""Store, statistics and report at scale: a simulated study of 1,000 trials x 5 methods x 7 metrics
x 500 images (24.5 M per-image rows), written straight into DuckDB, then the per-trial gains, an
ablation table, a plain SQL aggregate over the gains view, and the HTML report, each timed once.

    python bench/store_scale.py [--trials 1000] [--images 500]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import duckdb

from reports import build_report
from study.ablation import ablation
from study.gains import refresh_gains
from study.simulate import simulate_study
from study.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--images", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "scale.duckdb")
        info = simulate_study(db, trials=args.trials, images=args.images)
        size = os.path.getsize(db) / 1e6
        store = Store(db)
        t0 = time.perf_counter()
        n = refresh_gains(store, "simulated")
        t_gains = time.perf_counter() - t0
        store.close()
        con = duckdb.connect(db, read_only=True)
        t0 = time.perf_counter()
        ablation(con, ["simulated"], ["teacher", "attention_method"], "pointing_game")
        t_ablation = time.perf_counter() - t0
        t0 = time.perf_counter()
        con.execute("SELECT teacher, method, avg(gain), count(*) FROM gains_by_image WHERE study = 'simulated' "
                    "AND metric = 'pointing_game' GROUP BY ALL").fetchall()
        t_view = time.perf_counter() - t0
        t0 = time.perf_counter()
        con.execute("SELECT teacher, method, avg(gain), avg(model_ci_low), avg(model_ci_high) FROM gains "
                    "WHERE study = 'simulated' AND metric = 'pointing_game' GROUP BY ALL").fetchall()
        t_table = time.perf_counter() - t0
        con.close()
        t0 = time.perf_counter()
        build_report(db, ["simulated"], os.path.join(tmp, "r.html"))
        t_report = time.perf_counter() - t0
        html = os.path.getsize(os.path.join(tmp, "r.html")) / 1e6
    print(f"# store at scale: {args.trials} trials x 5 methods x 7 metrics x {args.images} images")
    print("| figure | value | target |\n|---|---|---|")
    print(f"| per-image rows | {info['rows']:,} | |")
    print(f"| insert of the per-image rows (one SQL statement) | {info['insert_localization_s']:.1f} s "
          f"({info['rows'] / info['insert_localization_s'] / 1e6:.1f} M rows/s) | |")
    print(f"| DuckDB file | {size:.0f} MB | |")
    print(f"| per-trial gains, intervals and tests ({n:,} comparisons, written to `gains`) | {t_gains:.1f} s | |")
    print(f"| ablation table, teacher x method, seed-level inference | {t_ablation * 1e3:.0f} ms | |")
    print(f"| SQL aggregate over the `gains_by_image` view (3.5 M pairs) | {t_view * 1e3:.0f} ms | < 200 ms |")
    print(f"| SQL aggregate over the `gains` table | {t_table * 1e3:.0f} ms | < 200 ms |")
    print(f"| HTML report | {t_report:.1f} s, {html:.1f} MB | < 15 s, < 20 MB |")


if __name__ == "__main__":
    main()
