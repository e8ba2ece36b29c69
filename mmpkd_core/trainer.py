"""The training loop: one readable ``train()``, small named helpers, a report per epoch."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch import nn

from mmpkd_core.config import TrialConfig
from mmpkd_core.data.base import DomainData
from mmpkd_core.data.stream import batches, train_stats
from mmpkd_core.evaluate import auroc, predict_scores, tune_method
from mmpkd_core.losses import kd_loss
from mmpkd_core.student import build_student, forward_with_features

if TYPE_CHECKING:  # a type only: the teachers import the trainer (image_self trains a ViT)
    from mmpkd_core.teachers.base import TeacherOutputs


@dataclass
class Inputs:
    """What a trial trains on: the images stay on disk and come a batch at a time, standardised on the
    device with the training split's statistics; labels and teacher outputs (a few numbers per image)
    sit on the device."""

    data: DomainData
    device: torch.device
    mean: float  # of the training images, in [0, 1] units
    std: float
    y: torch.Tensor  # (N,) training labels (as the student sees them)
    t_logits: torch.Tensor | None  # (N, 2)
    t_feat: torch.Tensor | None  # (N, D_t), standardised per dimension on the training split

    def batches(self, rows: np.ndarray, batch_size: int = 128, masks: bool = False):
        """``images[rows]`` standardised, in ``rows``' order; with ``masks``, ``(x, masks)`` pairs."""
        return batches(self.data.images, rows, batch_size, self.device, self.mean, self.std,
                       masks=self.data.masks if masks else None)


def trial_inputs(data: DomainData, teacher: TeacherOutputs | None, device: torch.device) -> Inputs:
    tr = data.index("train")
    mean, std = train_stats(data.images, tr)
    t_logits = t_feat = None
    if teacher is not None:
        t_logits = torch.from_numpy(teacher.logits).to(device)
        emb = teacher.embedding
        emb = (emb - emb[tr].mean(0)) / (emb[tr].std(0) + 1e-6)
        t_feat = torch.from_numpy(emb.astype(np.float32)).to(device)
    return Inputs(data, device, mean, std + 1e-6, torch.from_numpy(data.labels).to(device), t_logits, t_feat)


def get_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up, then cosine decay to 5% of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def val_metrics(cfg: TrialConfig, model, data: DomainData, t: Inputs) -> dict:
    """Validation AUROC, objective and the parameters it was scored at (``val_params``: None without a
    validation image with an ROI). The objective is the one the test objective is: the sampled
    attention method with its parameters tuned on these validation images (``tune_method``; the test
    images are scored with the combination the last epoch chose), so the sampler, ASHA and the stored
    ``val_objective`` see what ``test_objective`` measures. The objective's forward pass over the images
    with an ROI (one for the whole grid: ``attention.extract_grid``) also yields their logits (caught at
    the head), so only the images without one need another."""
    va = data.index("val")
    roi = data.roi_index("val")
    has_roi = np.isin(va, roi)
    caught: list[torch.Tensor] = []
    hook = model.head.register_forward_hook(lambda _m, _i, out: caught.append(out.detach()))
    try:
        params, objective = tune_method(model, lambda: t.batches(roi, 128, masks=True), None, cfg.attention_method,
                                        cfg.objective_metric)
    finally:
        hook.remove()
    scores = np.empty(len(va), dtype=np.float32)
    if len(caught) and sum(len(c) for c in caught) == len(roi):  # exactly one forward over the ROI images
        logits = torch.cat(caught)
        scores[has_roi] = (logits[:, 1] - logits[:, 0]).float().cpu().numpy()
    else:
        scores[has_roi] = predict_scores(model, t.batches(roi, 256))
    if (~has_roi).any():
        scores[~has_roi] = predict_scores(model, t.batches(va[~has_roi], 256))
    return {"val_auroc": auroc(data.true_labels[va], scores),
            "val_objective": objective if len(roi) else float("nan"), "val_params": params}


def train_epochs(cfg: TrialConfig, data: DomainData, t: Inputs) -> Iterator[tuple[nn.Module, dict]]:
    """Train the student, yielding ``(model, row)`` after each epoch: losses and validation metrics.

    A generator, so that several seeds of one recipe can be trained in lockstep and their
    validation objective averaged epoch by epoch.
    """
    s = cfg.student
    torch.manual_seed(cfg.seed)
    device = t.device
    model = build_student(s, data.images.shape[-1]).to(device)
    proj = nn.Linear(model.embed_dim, t.t_feat.shape[1]).to(device) if cfg.beta > 0 else None
    params = list(model.parameters()) + (list(proj.parameters()) if proj is not None else [])
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)

    tr = data.index("train")
    steps_per_epoch = math.ceil(len(tr) / s.batch_size)
    total, warmup = s.epochs * steps_per_epoch, s.warmup_epochs * steps_per_epoch
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    bf16 = s.precision == "bf16" and device.type == "cuda"
    step = 0
    for epoch in range(1, s.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        sums = {k: torch.zeros((), device=device) for k in ("loss", "ce", "kd", "feat")}
        order = tr[torch.randperm(len(tr), generator=g).numpy()]
        for start, x in zip(range(0, len(order), s.batch_size), t.batches(order, s.batch_size)):
            b = torch.from_numpy(order[start:start + s.batch_size]).to(device)
            for group in opt.param_groups:
                group["lr"] = get_lr(step, total, warmup, s.lr)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits, pre = forward_with_features(model, x)  # (B, 2), (B, D)
            logits, pre = logits.float(), pre.float()
            parts = kd_loss(
                logits, t.y[b],
                teacher_logits=t.t_logits[b] if t.t_logits is not None else None,
                temperature=cfg.temperature, alpha=cfg.alpha, beta=cfg.beta,
                student_feat=proj(pre) if proj is not None else None,
                teacher_feat=t.t_feat[b] if t.t_feat is not None else None,
            )
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            step += 1
            for k in sums:
                sums[k] += parts[k].detach() * len(b)  # no device sync inside the loop
        row = {"epoch": epoch, **{k: v.item() / len(tr) for k, v in sums.items()}, "lr": opt.param_groups[0]["lr"]}
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"non-finite training loss ({row['loss']}) in epoch {epoch}; "
                                     "lower lr or temperature")
        row.update(val_metrics(cfg, model, data, t))
        row["seconds"] = time.perf_counter() - t0
        yield model, row


def train(cfg: TrialConfig, data: DomainData, t: Inputs) -> tuple[nn.Module, list[dict]]:
    """Train to the end; the model and one row per epoch."""
    history = []
    for model, row in train_epochs(cfg, data, t):
        history.append(row)
    return model, history
