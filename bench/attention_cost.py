"""Cost of each attention method as a ratio to one forward pass on the same batch.

Methods and the forward pass are timed alternately, round after round, in one run, so that the
machine's load affects all of them alike; the median over rounds is reported.

    python bench/attention_cost.py [--batch 64] [--rounds 15] [--image-size 48]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from mmpkd_core import StudentConfig
from mmpkd_core.attention import available, extract
from mmpkd_core.student import build_student


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_student(StudentConfig(), args.image_size).eval()
    x = torch.randn(args.batch, 1, args.image_size, args.image_size)
    target = torch.zeros(args.batch, dtype=torch.long)

    def forward():
        with torch.no_grad():
            model(x)

    jobs = {"forward": forward, **{m: (lambda m=m: extract(m, model, x, target=target)) for m in available()}}
    for fn in jobs.values():  # warm-up
        fn()
    times = {k: [] for k in jobs}
    for _ in range(args.rounds):
        for k, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["forward"])
    print(f"# attention cost, batch {args.batch}, {args.image_size}x{args.image_size}, ViT patch 8 width 64 depth 3,"
          f" {args.threads} threads, {args.rounds} rounds, {platform.processor() or platform.machine()}")
    print("| method | median ms | x forward |\n|---|---|---|")
    for k in sorted(times, key=lambda k: statistics.median(times[k])):
        med = statistics.median(times[k])
        print(f"| {k} | {med * 1e3:.2f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
