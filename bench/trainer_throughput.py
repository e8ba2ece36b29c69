"""Training throughput: the engine's training loop against a bare PyTorch loop over the same timm
model, batch size and data, alternating runs in one process. The engine's epochs include its
per-epoch validation (AUROC and the objective's attention map on the validation images), which a
scheduler needs; the bare loop does nothing but train.

    python bench/trainer_throughput.py [--rounds 3] [--epochs 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mmpkd_core import DataConfig, StudentConfig, TrialConfig
from mmpkd_core.data import load_domain
from mmpkd_core.student import build_student
from mmpkd_core.trainer import train_epochs, trial_inputs


def bare_loop(cfg: TrialConfig, x: torch.Tensor, y: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = build_student(cfg.student, x.shape[-1])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.student.lr, weight_decay=cfg.student.weight_decay)
    t0 = time.perf_counter()
    for _ in range(cfg.student.epochs):
        model.train()
        for b in torch.randperm(len(x)).split(cfg.student.batch_size):
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return len(x) * cfg.student.epochs / (time.perf_counter() - t0)


def engine_loop(cfg: TrialConfig, data, t) -> float:
    n = len(data.index("train"))
    t0 = time.perf_counter()
    for _ in train_epochs(cfg, data, t):
        pass
    return n * cfg.student.epochs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrialConfig(domain="synthetic_ddsm", data=DataConfig(n_train=2000, n_val=200, n_test=200),
                      student=StudentConfig(epochs=args.epochs), cache_dir=".mmpkd_cache")
    data = load_domain(cfg.domain, cfg.data, cfg.cache_dir)
    t = trial_inputs(data, None, torch.device("cpu"))
    tr = data.index("train")
    x_train = torch.cat(list(t.batches(tr, 1024)))  # the bare loop holds the training images in memory
    engine, bare = [], []
    for _ in range(args.rounds):
        engine.append(engine_loop(cfg, data, t))
        bare.append(bare_loop(cfg, x_train, t.y[torch.from_numpy(tr)]))
    e, b = statistics.median(engine), statistics.median(bare)
    print(f"# trainer throughput: ViT patch 8 width 64 depth 3, 48x48, batch 32, 2000 images, {args.threads} thread(s),"
          f" {args.rounds} alternating rounds of {args.epochs} epochs")
    print("| loop | images/s (median) |\n|---|---|")
    print(f"| bare PyTorch | {b:.0f} |\n| engine (with per-epoch validation) | {e:.0f} |")
    print(f"| ratio engine / bare | {e / b:.3f} (target >= 0.95) |")


if __name__ == "__main__":
    main()
