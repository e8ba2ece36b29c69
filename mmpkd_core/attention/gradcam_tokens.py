"""``gradcam_tokens``: Grad-CAM over the patch tokens at the last block's ``norm1`` output.

Weights are the target logit's gradient averaged over patch tokens, per channel; the map is
``ReLU(Σ_c w_c · X[:, token, c])``. ``norm1`` of the last block is used because, under CLS
pooling, the last block's *output* passes no gradient to the patch tokens.
"""
from __future__ import annotations

import torch

from mmpkd_core.attention._capture import eval_mode, token_grid
from mmpkd_core.attention._grad import target_score
from mmpkd_core.attention.base import METHODS, Method


def gradcam_tokens(model, images, target, score: str = "contrast") -> torch.Tensor:
    acts: list[torch.Tensor] = []
    handle = model.blocks[-1].norm1.register_forward_hook(lambda _m, _i, out: acts.append(out))
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(images)
            (grad,) = torch.autograd.grad(target_score(logits, target, score), acts[0])
    finally:
        handle.remove()
    p = model.num_prefix_tokens
    x, g = acts[0][:, p:].detach(), grad[:, p:]  # (B, n_patches, D)
    weights = g.mean(dim=1, keepdim=True)  # (B, 1, D)
    cam = (weights * x).sum(dim=-1).clamp_min(0)  # (B, n_patches)
    h, w = token_grid(model)
    return cam.reshape(-1, h, w)


METHODS.register("gradcam_tokens")(Method("gradcam_tokens", gradcam_tokens, class_specific=True))
