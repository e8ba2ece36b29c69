"""Shared helper for gradient-based methods: the score whose gradient is explained.

Two named variants:

- ``contrast`` (default): the target logit minus the mean of the other logits -- for a two-class
  head, the log-odds of the target. A softmax classifier's logits carry a shared offset that no
  prediction depends on; its gradient is noise for an explanation, and in a binary head it can
  flip the sign of what a raw logit's gradient highlights.
- ``logit``: the target's raw logit, the one-hot backward of the original papers' code
  (ImageNet heads with 1,000 classes, where the shared offset matters little).
"""
from __future__ import annotations

import torch

SCORES = ("contrast", "logit")


def target_score(logits: torch.Tensor, target: torch.Tensor, score: str = "contrast") -> torch.Tensor:
    """Summed over the batch: images are independent, so the gradient of the sum w.r.t. one
    image's activations is that image's own gradient."""
    t = target.view(-1, 1).to(logits.device)
    chosen = logits.gather(1, t)  # (B, 1)
    if score == "logit":
        return chosen.sum()
    if score != "contrast":
        raise ValueError(f"score must be one of {', '.join(SCORES)}, not '{score}'")
    others = (logits.sum(dim=1, keepdim=True) - chosen) / max(1, logits.shape[1] - 1)
    return (chosen - others).sum()
