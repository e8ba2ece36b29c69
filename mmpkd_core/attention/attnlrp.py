"""``attnlrp``: Attention-aware LRP (Achtibat et al. 2024) for timm's VisionTransformer.

Implemented, as in the paper's efficient form, as gradient x input through a forward pass whose
gradient is modified so that each rule holds:

- LayerNorm: the standard deviation is held fixed (identity rule for the normalisation);
- GELU (and any element-wise activation): identity rule, ``y = x * (act(x) / x).detach()``;
- the bilinear products ``q @ k^T`` and ``A @ v``: uniform rule, each factor receives half,
  ``0.5 (a @ b.detach()) + 0.5 (a.detach() @ b)``;
- softmax: its plain gradient, which under gradient x input is the AttnLRP softmax rule
  ``R_in = x (R_out - s Σ R_out)``;
- linear layers and residual additions: plain gradient (LRP-0, relevance split in proportion).

The relevance of a patch is the sum over channels of (patch embedding x its gradient), read after
the patch embedding and before the position embeddings are added. Negative relevance is clipped
by ``extract``. The model's weights are used as they are; nothing is patched on the model.
"""
from __future__ import annotations

import torch
from torch import nn

from mmpkd_core.attention._capture import eval_mode, token_grid
from mmpkd_core.attention._grad import target_score
from mmpkd_core.attention.base import METHODS, Method


def _norm(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(mod, nn.LayerNorm):
        mean = x.mean(dim=-1, keepdim=True)
        std = torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + mod.eps).detach()
        y = (x - mean) / std
        return y * mod.weight + mod.bias if mod.elementwise_affine else y
    return mod(x)


def _identity_act(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    safe = torch.where(x.abs() < 1e-6, torch.full_like(x, 1e-6), x)
    return x * (act(x) / safe).detach()


def _uniform_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a @ b.detach()) + 0.5 * (a.detach() @ b)


def _attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, heads, N, head_dim)
    q, k = _norm(attn.q_norm, q), _norm(attn.k_norm, k)
    scores = _uniform_matmul(q * attn.scale, k.transpose(-2, -1))  # (B, heads, N, N)
    out = _uniform_matmul(scores.softmax(dim=-1), v)  # (B, heads, N, head_dim)
    out = _norm(attn.norm, out.transpose(1, 2).reshape(B, N, -1))
    return attn.proj(out)


def _mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return mlp.fc2(_norm(mlp.norm, _identity_act(mlp.act, mlp.fc1(x))))


def lrp_forward(model, images) -> tuple[torch.Tensor, torch.Tensor]:
    """``(patch embeddings (B, n, D), logits (B, C))``: the model's own forward values, with the
    rule-modified gradient path."""
    emb = model.patch_embed(images)  # (B, n_patches, D)
    x = model.norm_pre(model._pos_embed(emb))
    for blk in model.blocks:
        x = x + blk.ls1(_attention(blk.attn, _norm(blk.norm1, x)))
        x = x + blk.ls2(_mlp(blk.mlp, _norm(blk.norm2, x)))
    x = _norm(model.norm, x)
    return emb, model.head(_norm(model.fc_norm, model.pool(x)))


def attnlrp(model, images, target, score: str = "contrast") -> torch.Tensor:
    with eval_mode(model), torch.enable_grad():
        emb, logits = lrp_forward(model, images)
        (grad,) = torch.autograd.grad(target_score(logits, target, score), emb)
    rel = (emb * grad).sum(dim=-1).detach()  # (B, n_patches)
    h, w = token_grid(model)
    return rel.reshape(-1, h, w)


METHODS.register("attnlrp")(Method("attnlrp", attnlrp, class_specific=True))
