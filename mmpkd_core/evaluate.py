"""Evaluation of a trained student: classification AUROC and per-image localization scores."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mmpkd_core import attention, localization


@torch.no_grad()
def predict_scores(model, images, batch_size: int = 256) -> np.ndarray:
    """Class-1 score (logit difference) per image. ``images``: a tensor, or an iterable of batches
    (``Inputs.batches``: read from disk as they are scored)."""
    model.eval()
    out = [model(b) for b in (images.split(batch_size) if isinstance(images, torch.Tensor) else images)]
    if not out:
        return np.zeros(0, dtype=np.float32)
    logits = torch.cat(out)
    return (logits[:, 1] - logits[:, 0]).float().cpu().numpy()


def _pairs(images, masks, batch_size: int):
    """``(x, masks)`` batches: of a tensor and its masks, or the iterable of pairs given as ``images``."""
    if not isinstance(images, torch.Tensor):
        yield from images
        return
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], masks[start:start + batch_size]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def localization_scores(
    model, images, masks: np.ndarray | None, methods, metrics, batch_size: int = 128,
    params: dict[str, dict] | None = None, keep_maps: dict[str, list] | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """Every method x every metric, one score per image. ``images``: a tensor with its ``masks``, or
    an iterable of ``(x, masks)`` batches (``masks=None``). Maps are upsampled by
    ``localization.upsample`` (bilinear) to the mask's resolution; class-specific methods
    explain the class the student predicts. ``keep_maps``: {method: []} to receive the token-grid
    maps of those methods, batch by batch."""
    out: dict[tuple[str, str], list[np.ndarray]] = {(m, k): [] for m in methods for k in metrics}
    for x, msk in _pairs(images, masks, batch_size):
        size = msk.shape[-2:]
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


def tune_methods(model, images, masks: np.ndarray | None, methods, metric: str) -> dict[str, dict]:
    """For each method with tunable parameters (its ``grid``), the combination with the best mean
    ``metric`` on these (validation) images. Test images are never used here. ``images``: a tensor
    with its ``masks``, or a function returning a fresh iterable of ``(x, masks)`` batches (each
    combination reads the images again: nothing holds them all)."""
    chosen: dict[str, dict] = {}
    for m in methods:
        if not attention.METHODS.get(m).grid:
            continue
        params, _ = tune_method(model, images, masks, m, metric)
        if params is not None:
            chosen[m] = params
    return chosen


def tune_method(model, images, masks: np.ndarray | None, method: str, metric: str) -> tuple[dict | None, float]:
    """The combination of ``method``'s grid (its defaults first) with the best mean ``metric`` on these
    validation images, and that mean: the objective as the study sees it, epoch by epoch and at the end.
    Every combination is scored on each batch as it is read (``attention.extract_grid``: one forward pass
    for a method that maps captured attention weights). ``(None, nan)`` without an image with an ROI; a
    method without a grid is scored once with ``{}``."""
    import itertools

    grid = attention.METHODS.get(method).grid
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    feed = images if isinstance(images, torch.Tensor) else images()
    per_combo: list[list[np.ndarray]] = [[] for _ in combos]
    for x, msk in _pairs(feed, masks, 128):
        for out, grid_map in zip(per_combo, attention.extract_grid(method, model, x, combos)):
            out.append(localization.score(metric, localization.upsample(grid_map, msk.shape[-2:]), msk))
    if not per_combo[0]:  # no validation image with an ROI: nothing to tune on
        return None, float("nan")
    best, best_params = -np.inf, None
    for p, parts in zip(combos, per_combo):
        s = np.concatenate(parts)
        score = float(np.nanmean(s)) if np.isfinite(s).any() else -np.inf
        if score > best or best_params is None:  # ties keep the first (the grid lists the default first)
            best, best_params = score, p
    return best_params, (best if np.isfinite(best) else float("nan"))
