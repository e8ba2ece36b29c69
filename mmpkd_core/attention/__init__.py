"""Attention-map extraction from a timm ViT: one method per module, one registry.

``extract(method, model, images, target=None) -> Tensor[B, h, w]`` on the token grid.
"""
from __future__ import annotations

import torch

from mmpkd_core.attention import attnlrp, chance, grad_rollout, gradcam_tokens, raw_cls, rollout  # noqa: F401  (fill the registry)
from mmpkd_core.attention.base import METHODS, Method
from mmpkd_core.attention.chance import CHANCE


def extract(method: str, model, images: torch.Tensor, target: torch.Tensor | None = None, **params) -> torch.Tensor:
    m = METHODS.get(method)
    if m.class_specific and target is None:
        with torch.no_grad():
            target = model(images).argmax(dim=-1)
    out = m.fn(model, images, target, **params)
    return out.clamp_min(0).detach()


def available() -> list[str]:
    return METHODS.names()


__all__ = ["CHANCE", "METHODS", "Method", "available", "extract"]
