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
    # the map from one forward pass's captured attention weights ((B, heads, N, N) per block) and the
    # parameters: a method that has one is scored under its whole grid from a single forward pass
    from_attention: Callable[..., torch.Tensor] | None = None


METHODS: Registry[Method] = Registry("attention method")
