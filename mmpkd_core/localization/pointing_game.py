"""``pointing_game``: is the map's maximum on the lesion?

A hit if the maximum lies within ``tolerance`` pixels of the mask. Tied maxima share the credit:
the score is the fraction of tied maximal pixels that land within tolerance, so a flat map is not
counted as a hit because one of its pixels lies inside. An empty mask gives NaN.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

from mmpkd_core.localization.base import METRICS, Metric, empty_to_nan


def dilate(masks: np.ndarray, tolerance: int) -> np.ndarray:
    if tolerance <= 0:
        return masks
    r = np.arange(-tolerance, tolerance + 1)
    disc = (r[:, None] ** 2 + r[None, :] ** 2) <= tolerance**2
    return binary_dilation(masks, structure=disc[None])  # (1, k, k): never crosses images


def pointing_game(maps: np.ndarray, masks: np.ndarray, tolerance: int = 0, rtol: float = 1e-6) -> np.ndarray:
    B = len(maps)
    flat = maps.reshape(B, -1)
    top = flat.max(axis=1, keepdims=True)
    ties = flat >= top - rtol * np.abs(top)  # (B, H*W)
    near = dilate(masks, tolerance).reshape(B, -1)
    score = (ties & near).sum(axis=1) / ties.sum(axis=1)
    return empty_to_nan(score, masks)


METRICS.register("pointing_game")(Metric("pointing_game", pointing_game, binary=True))
