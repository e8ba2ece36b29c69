"""Chance references: maps that know nothing about the image. Every metric is reported beside them.

- ``uniform``: every token equal (a pointing game then shares the credit over all pixels);
- ``centre``: a centred Gaussian prior (sigma = a quarter of the grid), the "lesions sit in the
  middle" baseline;
- ``random``: i.i.d. uniform noise from a fixed seed (deterministic per call).
"""
from __future__ import annotations

import torch

from mmpkd_core.attention._capture import token_grid
from mmpkd_core.attention.base import METHODS, Method


def uniform(model, images, target=None) -> torch.Tensor:
    h, w = token_grid(model)
    return torch.ones(len(images), h, w, device=images.device)


def centre(model, images, target=None) -> torch.Tensor:
    h, w = token_grid(model)
    yy = torch.arange(h, dtype=torch.float32, device=images.device) - (h - 1) / 2
    xx = torch.arange(w, dtype=torch.float32, device=images.device) - (w - 1) / 2
    g = torch.exp(-0.5 * ((yy[:, None] / (h / 4)) ** 2 + (xx[None, :] / (w / 4)) ** 2))
    return g.expand(len(images), h, w).clone()


def random(model, images, target=None, seed: int = 0) -> torch.Tensor:
    h, w = token_grid(model)
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(len(images), h, w, generator=gen).to(images.device)


for _name, _fn in (("uniform", uniform), ("centre", centre), ("random", random)):
    METHODS.register(_name)(Method(_name, _fn, class_specific=False))
CHANCE = ("uniform", "centre", "random")
