"""Shared helper for gradient-based methods: the target logit's gradient without touching .grad."""
from __future__ import annotations

import torch


def target_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of each image's target logit (images are independent, so the gradient
    of the sum w.r.t. one image's activations is that image's own gradient)."""
    return logits.gather(1, target.view(-1, 1).to(logits.device)).sum()
