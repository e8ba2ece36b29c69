"""Evaluation of a trained student: classification AUROC and per-image localization scores."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mmpkd_core import attention, localization


@torch.no_grad()
def predict_scores(model, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class-1 score (logit difference) per image."""
    model.eval()
    out = [model(b) for b in images.split(batch_size)]
    logits = torch.cat(out)
    return (logits[:, 1] - logits[:, 0]).float().cpu().numpy()


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def localization_scores(
    model, images: torch.Tensor, masks: np.ndarray, methods, metrics, batch_size: int = 128,
    params: dict[str, dict] | None = None, keep_maps: dict[str, list] | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """Every method x every metric, one score per image. Maps are upsampled by
    ``localization.upsample`` (bilinear) to the mask's resolution; class-specific methods
    explain the class the student predicts. ``keep_maps``: {method: []} to receive the token-grid
    maps of those methods, batch by batch."""
    size = masks.shape[-2:]
    out: dict[tuple[str, str], list[np.ndarray]] = {(m, k): [] for m in methods for k in metrics}
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        msk = masks[start : start + batch_size]
        target = None
        if any(attention.METHODS.get(m).class_specific for m in methods):
            with torch.no_grad():
                target = model.eval()(x).argmax(dim=-1)  # one forward for every class-specific method
        for m in methods:
            grid = attention.extract(m, model, x, target=target, **(params or {}).get(m, {}))  # (B, h, w)
            if keep_maps is not None and m in keep_maps:
                keep_maps[m].append(grid.cpu().numpy())
            maps = localization.upsample(grid, size)
            for k in metrics:
                out[(m, k)].append(localization.score(k, maps, msk))
    return {key: np.concatenate(v) if v else np.zeros(0) for key, v in out.items()}


def tune_methods(model, images: torch.Tensor, masks: np.ndarray, methods, metric: str) -> dict[str, dict]:
    """For each method with tunable parameters (its ``grid``), the combination with the best mean
    ``metric`` on these (validation) images. Test images are never used here."""
    import itertools

    chosen: dict[str, dict] = {}
    for m in methods:
        grid = attention.METHODS.get(m).grid
        if not grid or len(images) == 0:
            continue
        best, best_params = -np.inf, None
        for values in itertools.product(*grid.values()):
            p = dict(zip(grid, values))
            s = localization_scores(model, images, masks, [m], [metric], params={m: p})[(m, metric)]
            score = float(np.nanmean(s)) if np.isfinite(s).any() else -np.inf
            if score > best:  # ties keep the first (the grid lists the default first)
                best, best_params = score, p
        chosen[m] = best_params
    return chosen
