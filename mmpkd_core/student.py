"""The student: a timm VisionTransformer seeing the image alone."""
from __future__ import annotations

import timm
import torch
from torch import nn

from mmpkd_core.config import StudentConfig


def build_student(cfg: StudentConfig, image_size: int, in_chans: int = 1, num_classes: int = 2) -> nn.Module:
    """``cfg.model`` is a timm model name; patch size, width, depth and heads override its shape."""
    if image_size % cfg.patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {cfg.patch_size}")
    return timm.create_model(
        cfg.model, pretrained=False, num_classes=num_classes, in_chans=in_chans, img_size=image_size,
        patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
    )


def forward_with_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, C), pooled embedding (B, D))`` in one pass."""
    pre = model.forward_head(model.forward_features(x), pre_logits=True)  # (B, D)
    return model.head(pre), pre
