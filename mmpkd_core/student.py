"""The student: a timm VisionTransformer seeing the image alone."""
from __future__ import annotations

import os

import timm
import torch
from torch import nn

from mmpkd_core.config import StudentConfig


def build_student(cfg: StudentConfig, image_size: int, in_chans: int = 1, num_classes: int = 2) -> nn.Module:
    """``cfg.model`` is a timm model name; patch size, width, depth and heads override its shape.

    ``cfg.pretrained`` names a local checkpoint of that shape; timm loads it, summing the RGB patch
    weights into one grey channel, resampling the position embedding to ``image_size`` and dropping
    a classifier of another width. Nothing is downloaded."""
    if image_size % cfg.patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {cfg.patch_size}")
    extra = {}
    if cfg.pretrained:
        if not os.path.isfile(cfg.pretrained):
            raise ValueError(f"student.pretrained: {cfg.pretrained} does not exist")
        extra = {"pretrained": True, "pretrained_cfg_overlay": {"file": cfg.pretrained}}
    try:
        return timm.create_model(
            cfg.model, num_classes=num_classes, in_chans=in_chans, img_size=image_size,
            patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, **extra,
        )
    except RuntimeError as err:
        if not cfg.pretrained:
            raise
        first = next((ln.strip() for ln in str(err).splitlines() if "mismatch" in ln or "Missing" in ln), str(err))
        raise ValueError(f"student.pretrained: {cfg.pretrained} does not fit {cfg.model} with patch_size "
                         f"{cfg.patch_size}, embed_dim {cfg.embed_dim}, depth {cfg.depth}, num_heads {cfg.num_heads}: "
                         f"{first[:200]} -- set the student's shape to the checkpoint's") from None


def forward_with_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, C), pooled embedding (B, D))`` in one pass."""
    pre = model.forward_head(model.forward_features(x), pre_logits=True)  # (B, D)
    return model.head(pre), pre
