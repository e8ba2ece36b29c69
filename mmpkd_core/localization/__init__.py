"""Localization metrics of a map against an ROI mask, vectorised over the batch.

``score(metric, maps, masks, **params) -> np.ndarray[B]``; maps ``(B, H, W)`` float at the mask's
resolution (see ``upsample`` for the rule the engine uses), masks ``(B, H, W)`` bool.
"""
from __future__ import annotations

import numpy as np

from mmpkd_core.localization import (  # noqa: F401  (fill the registry)
    cnr, iou_top_k, pixel_ranking, pointing_game, relevance_mass, relevance_rank)
from mmpkd_core.localization.base import METRICS, Metric, upsample


def score(metric: str, maps, masks, **params) -> np.ndarray:
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be (B, H, W)")
    return METRICS.get(metric).fn(maps, masks, **params)


def available() -> list[str]:
    return METRICS.names()


__all__ = ["METRICS", "Metric", "available", "score", "upsample"]
