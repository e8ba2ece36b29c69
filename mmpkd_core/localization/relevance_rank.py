"""``relevance_rank``: precision of the map's top-|mask| pixels (Arras et al. 2022).

With K = |mask|, the share of the K highest-valued pixels that lie inside the mask. Ties at the
K-th value share the remaining slots in proportion, so the score does not depend on pixel order.
An empty mask gives NaN.
"""
from __future__ import annotations

import numpy as np

from mmpkd_core.localization.base import METRICS, Metric, empty_to_nan


def top_k_credit(flat: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(B, P) fractional membership in the top-k set per row: 1 above the k-th value, a shared
    fraction at it, 0 below."""
    k = np.clip(k, 1, flat.shape[1])
    kth = np.take_along_axis(-np.sort(-flat, axis=1), (k - 1)[:, None], axis=1)  # (B, 1)
    above = flat > kth
    equal = flat == kth
    slots = k[:, None] - above.sum(axis=1, keepdims=True)
    return above + equal * (slots / equal.sum(axis=1, keepdims=True))


def relevance_rank(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    B = len(maps)
    m = masks.reshape(B, -1)
    k = m.sum(axis=1)
    credit = top_k_credit(maps.reshape(B, -1), k)
    score = (credit * m).sum(axis=1) / np.maximum(k, 1)
    return empty_to_nan(score, masks)


METRICS.register("relevance_rank")(Metric("relevance_rank", relevance_rank, binary=False))
