"""``iou_top_k``: IoU between the mask and the map's top ``k`` fraction of pixels.

The top set holds round(k * pixels) pixels; ties at its edge count fractionally (as in
``relevance_rank``), so IoU = Σ min(top, mask) / Σ max(top, mask). An empty mask gives NaN.
"""
from __future__ import annotations

import numpy as np

from mmpkd_core.localization.base import METRICS, Metric, empty_to_nan
from mmpkd_core.localization.relevance_rank import top_k_credit


def iou_top_k(maps: np.ndarray, masks: np.ndarray, k: float = 0.05) -> np.ndarray:
    B = len(maps)
    flat, m = maps.reshape(B, -1), masks.reshape(B, -1).astype(np.float64)
    n = np.full(B, max(1, int(round(k * flat.shape[1]))))
    top = top_k_credit(flat, n)
    score = np.minimum(top, m).sum(axis=1) / np.maximum(top, m).sum(axis=1)
    return empty_to_nan(score, masks)


METRICS.register("iou_top_k")(Metric("iou_top_k", iou_top_k, binary=False))
