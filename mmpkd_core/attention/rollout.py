"""``rollout``: attention rollout (Abnar & Zuidema 2020).

Per layer ``A' = 0.5 A + 0.5 I`` (heads fused first), rows renormalised, then multiplied
through the layers: ``R = A'_L ... A'_1``; the map is R's CLS row over the patch tokens.
``discard_ratio`` zeroes that fraction of the lowest fused weights per row (the CLS column is
kept), as in the common reference code.
"""
from __future__ import annotations

import torch

from mmpkd_core.attention._capture import captured_attention, fuse_heads, to_grid
from mmpkd_core.attention.base import METHODS, Method


@torch.no_grad()
def rollout(model, images, target=None, head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
    with captured_attention(model) as attns:
        model(images)
    return rollout_from(model, attns, head_fusion, discard_ratio)


@torch.no_grad()
def rollout_from(model, attns: list[torch.Tensor], head_fusion: str = "mean",
                 discard_ratio: float = 0.0) -> torch.Tensor:
    B, _, N, _ = attns[0].shape
    eye = torch.eye(N, dtype=attns[0].dtype, device=attns[0].device)
    R = eye.expand(B, N, N)
    for a in attns:
        a = fuse_heads(a, head_fusion)  # (B, N, N)
        if discard_ratio > 0:
            k = int(discard_ratio * (N - 1))
            if k > 0:
                low = a[:, :, 1:].topk(k, dim=-1, largest=False).indices + 1
                a = a.scatter(-1, low, 0.0)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        R = a @ R  # (B, N, N)
    return to_grid(model, R[:, 0])


METHODS.register("rollout")(Method("rollout", rollout, class_specific=False,
                                   grid={"head_fusion": ("mean", "max", "min"), "discard_ratio": (0.0, 0.5, 0.9)},
                                   from_attention=rollout_from))
