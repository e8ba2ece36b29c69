import pytest
import timm
import torch

from mmpkd_core import attention
from mmpkd_core.attention._capture import captured_attention


def tiny_vit(reg_tokens=0):
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                             depth=2, num_heads=2, in_chans=1, num_classes=2, reg_tokens=reg_tokens)


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("reg_tokens", [0, 4])
@pytest.mark.parametrize("method", attention.available())
def test_every_method_shape_nonnegative_deterministic_and_leaves_nothing_behind(method, reg_tokens):
    model = tiny_vit(reg_tokens)
    model.train()
    x = torch.randn(3, 1, 32, 32)
    hooks = hook_count(model)
    a = attention.extract(method, model, x)
    b = attention.extract(method, model, x)
    assert a.shape == (3, 4, 4)
    assert (a >= 0).all()
    torch.testing.assert_close(a, b)
    assert hook_count(model) == hooks
    assert model.training  # train/eval state restored
    assert all(blk.attn.fused_attn == timm.layers.use_fused_attn() for blk in model.blocks)


def test_raw_cls_is_the_last_layers_cls_row_averaged_over_heads():
    model = tiny_vit()
    x = torch.randn(2, 1, 32, 32)
    with captured_attention(model) as attns:
        model(x)
    expected = attns[-1].mean(1)[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(attention.extract("raw_cls", model, x), expected)


def test_rollout_matches_the_product_written_out_by_hand():
    model = tiny_vit()
    x = torch.randn(2, 1, 32, 32)
    with captured_attention(model) as attns:
        model(x)
    eye = torch.eye(17)
    a1 = 0.5 * attns[0].mean(1) + 0.5 * eye
    a2 = 0.5 * attns[1].mean(1) + 0.5 * eye
    a1, a2 = a1 / a1.sum(-1, keepdim=True), a2 / a2.sum(-1, keepdim=True)
    expected = (a2 @ a1)[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(attention.extract("rollout", model, x), expected)


def test_rollout_of_identity_attention_is_uniform_zero_to_patches():
    """If every token attends only to itself, nothing flows from the patches to CLS."""
    model = tiny_vit()
    x = torch.randn(1, 1, 32, 32)
    from mmpkd_core.attention import rollout as rollout_module

    with captured_attention(model) as attns:
        model(x)
    assert len(attns) == 2 and attns[0].shape == (1, 2, 17, 17)
    out = rollout_module.rollout(model, x)
    assert out.sum() < 1.0  # CLS keeps part of its own mass


def test_unknown_method_lists_known_ones():
    with pytest.raises(KeyError, match="Known: raw_cls, rollout"):
        attention.extract("rolout", tiny_vit(), torch.randn(1, 1, 32, 32))
