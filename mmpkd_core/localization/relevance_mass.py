"""``relevance_mass``: the share of the map's positive mass that lies inside the mask.

Negative values are clipped to zero first, so the score stays in [0, 1]. A map with no positive
mass scores 0; an empty mask gives NaN.
"""
from __future__ import annotations

import numpy as np

from mmpkd_core.localization.base import METRICS, Metric, empty_to_nan


def relevance_mass(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    B = len(maps)
    pos = np.clip(maps, 0, None).reshape(B, -1).astype(np.float64)
    inside = (pos * masks.reshape(B, -1)).sum(axis=1)
    total = pos.sum(axis=1)
    score = np.divide(inside, total, out=np.zeros(B), where=total > 0)
    return empty_to_nan(score, masks)


METRICS.register("relevance_mass")(Metric("relevance_mass", relevance_mass, binary=False))
