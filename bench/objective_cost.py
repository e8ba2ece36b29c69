"""The cost of one objective (science version 2): each epoch's validation objective is the sampled
attention method at the parameters tuned on the validation images (``tune_method`` over the method's
grid), where before it was the method at its default parameters. Measured per epoch of the default
study's stand-in student, on one thread as a trial trains: the validation step both ways, side by side
on the same model after each epoch, and the epoch's wall time with the tuned validation.

    python bench/objective_cost.py [--epochs 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time

import torch

from mmpkd_core import DataConfig, StudentConfig, TrialConfig
from mmpkd_core.attention import METHODS
from mmpkd_core.data import load_domain
from mmpkd_core.trainer import train_epochs, trial_inputs, val_metrics


def at_defaults(method: str) -> str:
    """The method registered again, in this process, without a grid: ``val_metrics`` then scores it once,
    at its defaults, as the validation step did before science version 2."""
    name = f"{method}_at_defaults"
    if name not in METHODS:
        METHODS.register(name)(dataclasses.replace(METHODS.get(method), name=name, grid={}))
    return name


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = TrialConfig(domain="synthetic_ddsm", data=DataConfig(n_train=2000, n_val=200, n_test=200, image_size=48),
                       student=StudentConfig(patch_size=8, embed_dim=64, depth=3, num_heads=4, epochs=args.epochs),
                       cache_dir=".mmpkd_cache", threads=1)
    data = load_domain(base.domain, base.data, base.cache_dir)
    t = trial_inputs(data, None, torch.device("cpu"))
    print(f"# one objective: the validation step per epoch, tuned on validation against the defaults; ViT patch 8 "
          f"width 64 depth 3, 48x48, 2,000 training and {len(data.roi_index('val'))} validation images with an "
          f"ROI, 1 thread, medians over {args.epochs} epochs")
    print("| sampled method | grid | validation, defaults (s) | validation, tuned (s) | epoch before (s) "
          "| epoch now (s) | epoch now / before |\n|---|---|---|---|---|---|---|")
    for method in ("raw_cls", "rollout", "grad_rollout"):
        cfg = dataclasses.replace(base, attention_method=method)
        rows = []
        before_cfg = dataclasses.replace(cfg, attention_method=at_defaults(method))
        for model, row in train_epochs(cfg, data, t):
            d = timed(lambda: val_metrics(before_cfg, model, data, t))
            v = timed(lambda: val_metrics(cfg, model, data, t))
            rows.append((d, v, row["seconds"]))
        d, v, now = (statistics.median(x) for x in zip(*rows))
        before = now - v + d
        combos = math.prod(len(g) for g in METHODS.get(method).grid.values())
        print(f"| {method} | {combos} | {d:.3f} | {v:.3f} | {before:.2f} | {now:.2f} | {now / before:.3f} |")


if __name__ == "__main__":
    main()
