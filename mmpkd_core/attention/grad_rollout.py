"""``grad_rollout``: gradient-weighted rollout (Chefer, Gur & Wolf 2021, "Generic attention-model
explainability for interpreting bi-modal and encoder-decoder transformers").

Per layer ``Ā = mean_h((∂y_t/∂A ⊙ A)^+)``, and ``R = I; R += Ā @ R`` through the layers; the map is
R's CLS row over the patch tokens. Class-specific: ``y_t`` is the target class's logit.
"""
from __future__ import annotations

import torch

from mmpkd_core.attention._capture import captured_attention, to_grid
from mmpkd_core.attention._grad import target_score
from mmpkd_core.attention.base import METHODS, Method


def grad_rollout(model, images, target, score: str = "contrast") -> torch.Tensor:
    with torch.enable_grad(), captured_attention(model) as attns:
        logits = model(images)
        grads = torch.autograd.grad(target_score(logits, target, score), attns)  # parameters' .grad untouched
    B, _, N, _ = attns[0].shape
    R = torch.eye(N, device=images.device).expand(B, N, N)
    for a, g in zip(attns, grads):
        cam = (g * a).clamp_min(0).mean(dim=1)  # (B, N, N)
        R = R + cam.detach() @ R
    return to_grid(model, R[:, 0])


METHODS.register("grad_rollout")(Method("grad_rollout", grad_rollout, class_specific=True))
