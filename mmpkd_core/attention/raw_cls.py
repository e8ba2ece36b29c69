"""``raw_cls``: the last layer's attention from the CLS token to the patch tokens."""
from __future__ import annotations

import torch

from mmpkd_core.attention._capture import captured_attention, fuse_heads, to_grid
from mmpkd_core.attention.base import METHODS, Method


@torch.no_grad()
def raw_cls(model, images, target=None, head_fusion: str = "mean") -> torch.Tensor:
    with captured_attention(model) as attns:
        model(images)
    return raw_cls_from(model, attns, head_fusion)


def raw_cls_from(model, attns: list[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    last = fuse_heads(attns[-1], head_fusion)  # (B, N, N)
    return to_grid(model, last[:, 0])  # (B, h, w)


METHODS.register("raw_cls")(Method("raw_cls", raw_cls, class_specific=False, grid={"head_fusion": ("mean", "max")},
                                   from_attention=raw_cls_from))
