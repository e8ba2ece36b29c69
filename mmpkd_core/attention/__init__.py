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


def extract_grid(method: str, model, images: torch.Tensor, combos: list[dict],
                 target: torch.Tensor | None = None) -> list[torch.Tensor]:
    """``extract`` under each parameter combination of ``combos``, in order. A method with
    ``from_attention`` runs the model once and derives every combination's map from the captured
    weights (the same numbers as one forward pass per combination); any other (a class-specific one
    among them: it explains ``target``, the class the model predicts unless given, found once for
    every combination), once per combination."""
    m = METHODS.get(method)
    from mmpkd_core.attention._capture import captured_attention, eval_mode

    if m.class_specific and target is None:  # predicted in eval mode, the model's mode left as it was
        with torch.no_grad(), eval_mode(model):
            target = model(images).argmax(dim=-1)
    if m.from_attention is None or m.class_specific or len(combos) == 1:
        return [extract(method, model, images, target, **p) for p in combos]

    with torch.no_grad(), captured_attention(model) as attns:
        model(images)
    return [m.from_attention(model, attns, **p).clamp_min(0).detach() for p in combos]


def available() -> list[str]:
    return METHODS.names()


__all__ = ["CHANCE", "METHODS", "Method", "available", "extract", "extract_grid"]
