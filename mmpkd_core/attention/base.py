"""The attention-method contract and its registry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from mmpkd_core.registry import Registry


@dataclass(frozen=True)
class Method:
    """``fn(model, images (B, C, H, W), target (B,) or None, **params) -> (B, h, w)`` non-negative.

    The function may not leave hooks on the model or change its train/eval state or its
    fused-attention flags; ``class_specific`` methods explain ``target`` (default: predicted class).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    class_specific: bool
    grid: dict[str, tuple] = field(default_factory=dict)  # parameters tuned on validation images, per trial


METHODS: Registry[Method] = Registry("attention method")
