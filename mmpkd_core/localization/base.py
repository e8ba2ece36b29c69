"""The localization-metric contract, its registry, and the upsampling rule."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mmpkd_core.registry import Registry


@dataclass(frozen=True)
class Metric:
    """``fn(maps (B, H, W) float, masks (B, H, W) bool, **params) -> (B,)``; NaN where a mask is empty.

    ``binary`` metrics score hit/miss per image (0 or 1, or a shared credit on ties).
    """

    name: str
    fn: Callable[..., np.ndarray]
    binary: bool


METRICS: Registry[Metric] = Registry("localization metric")


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The rule: token-grid maps ``(B, h, w)`` -> pixel maps ``(B, H, W)`` by bilinear interpolation
    with ``align_corners=False`` (each token's value sits at its patch centre)."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)
    return up[:, 0].cpu().numpy()


def empty_to_nan(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    values[~masks.reshape(len(masks), -1).any(axis=1)] = np.nan
    return values
