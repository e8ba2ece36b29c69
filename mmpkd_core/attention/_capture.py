"""Capturing a timm ViT's attention weights without leaving anything behind."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module):
    """The model in ``eval()`` inside the block; its train/eval state as it was on exit, whatever happens."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def captured_attention(model: nn.Module, keep_grad: bool = False):
    """Yield a list filled, per forward pass, with each block's attention ``(B, heads, N, N)``.

    timm's fused attention kernel never materialises the weights, so it is switched off only
    inside this block; the model is put in ``eval()``; hooks, the fused flags and the train/eval
    state are restored on exit, whatever happens. ``keep_grad`` retains the weights' gradients.
    """
    blocks = list(model.blocks)
    fused = [b.attn.fused_attn for b in blocks]
    store: list[torch.Tensor] = []

    def hook(_module, _inputs, out):
        if keep_grad and out.requires_grad:
            out.retain_grad()
        store.append(out)

    handles = []
    try:
        for b in blocks:
            b.attn.fused_attn = False
            handles.append(b.attn.attn_drop.register_forward_hook(hook))
        with eval_mode(model):
            yield store
    finally:
        for h in handles:
            h.remove()
        for b, f in zip(blocks, fused):
            b.attn.fused_attn = f


def token_grid(model: nn.Module) -> tuple[int, int]:
    return tuple(model.patch_embed.grid_size)


def to_grid(model: nn.Module, cls_row: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` CLS-row over all tokens -> ``(B, h, w)`` over patch tokens (prefix tokens dropped)."""
    p = model.num_prefix_tokens
    h, w = token_grid(model)
    return cls_row[:, p:].reshape(-1, h, w)


def fuse_heads(attn: torch.Tensor, fusion: str) -> torch.Tensor:
    """``(B, heads, N, N) -> (B, N, N)`` by mean, max or min over heads."""
    if fusion == "mean":
        return attn.mean(dim=1)
    if fusion == "max":
        return attn.amax(dim=1)
    if fusion == "min":
        return attn.amin(dim=1)
    raise ValueError(f"head fusion must be mean, max or min, not '{fusion}'")
