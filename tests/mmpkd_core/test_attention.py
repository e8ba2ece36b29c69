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


def attention_of(model, batch: int):
    """A random batch and the attention weights each block computed on it."""
    x = torch.randn(batch, 1, 32, 32)
    with captured_attention(model) as attns:
        model(x)
    return x, attns


def test_raw_cls_is_the_last_layers_cls_row_averaged_over_heads():
    model = tiny_vit()
    x, attns = attention_of(model, 2)
    expected = attns[-1].mean(1)[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(attention.extract("raw_cls", model, x), expected)


def test_rollout_matches_the_product_written_out_by_hand():
    model = tiny_vit()
    x, attns = attention_of(model, 2)
    eye = torch.eye(17)
    a1 = 0.5 * attns[0].mean(1) + 0.5 * eye
    a2 = 0.5 * attns[1].mean(1) + 0.5 * eye
    a1, a2 = a1 / a1.sum(-1, keepdim=True), a2 / a2.sum(-1, keepdim=True)
    expected = (a2 @ a1)[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(attention.extract("rollout", model, x), expected)


def test_rollout_of_identity_attention_is_uniform_zero_to_patches():
    """One attention matrix per block is captured, and the identity term keeps part of CLS's mass on itself."""
    from mmpkd_core.attention import rollout as rollout_module

    model = tiny_vit()
    x, attns = attention_of(model, 1)
    assert len(attns) == 2 and attns[0].shape == (1, 2, 17, 17)
    out = rollout_module.rollout(model, x)
    assert out.sum() < 1.0  # CLS keeps part of its own mass


def test_unknown_method_lists_known_ones():
    with pytest.raises(KeyError, match="Did you mean 'rollout'.*Known: attnlrp, centre, grad_rollout"):
        attention.extract("rolout", tiny_vit(), torch.randn(1, 1, 32, 32))


def test_grad_rollout_matches_chefers_recursion_written_out():
    model = tiny_vit()
    x = torch.randn(2, 1, 32, 32)
    target = torch.tensor([1, 0])
    model.eval()
    with captured_attention(model) as attns:
        logits = model(x)
        grads = torch.autograd.grad(logits[0, 1] - logits[0, 0] + logits[1, 0] - logits[1, 1], attns)
    R = torch.eye(17).expand(2, 17, 17)
    for a, g in zip(attns, grads):
        R = R + (g * a).clamp(min=0).mean(1) @ R
    expected = R[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(attention.extract("grad_rollout", model, x, target=target), expected.detach())
    assert all(p.grad is None for p in model.parameters())  # the explanation left no gradients behind


def test_gradcam_tokens_is_relu_of_gradient_weighted_norm1_activations():
    model = tiny_vit().eval()
    x = torch.randn(2, 1, 32, 32)
    target = torch.tensor([0, 1])
    acts = []
    h = model.blocks[-1].norm1.register_forward_hook(lambda m, i, o: acts.append(o))
    logits = model(x)
    h.remove()
    (g,) = torch.autograd.grad(logits[0, 0] - logits[0, 1] + logits[1, 1] - logits[1, 0], acts[0])
    w = g[:, 1:].mean(1, keepdim=True)
    expected = (w * acts[0][:, 1:]).sum(-1).clamp(min=0).reshape(2, 4, 4)
    torch.testing.assert_close(attention.extract("gradcam_tokens", model, x, target=target), expected.detach())


def test_attnlrp_forward_reproduces_the_models_logits():
    from mmpkd_core.attention.attnlrp import lrp_forward

    model = tiny_vit(reg_tokens=2).eval()
    x = torch.randn(3, 1, 32, 32)
    _, logits = lrp_forward(model, x)
    torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-5)


def test_attnlrp_maps_are_class_specific_and_finite():
    model = tiny_vit().eval()
    x = torch.randn(2, 1, 32, 32)
    a0 = attention.METHODS.get("attnlrp").fn(model, x, torch.tensor([0, 0]))
    a1 = attention.METHODS.get("attnlrp").fn(model, x, torch.tensor([1, 1]))
    assert torch.isfinite(a0).all() and not torch.allclose(a0, a1)


def test_chance_references():
    model = tiny_vit()
    x = torch.randn(2, 1, 32, 32)
    u = attention.extract("uniform", model, x)
    c = attention.extract("centre", model, x)
    assert (u == 1).all()
    assert c[0, 1, 1] == c[0, 2, 2] == c.max() and c[0, 0, 0] == c.min()  # peaks in the middle, symmetric


@pytest.mark.parametrize("method", attention.available())
def test_a_grid_from_one_forward_pass_equals_one_pass_per_combination(method):
    """``extract_grid`` (the objective tuned on validation, every epoch) gives each combination of the
    method's grid exactly the map ``extract`` gives it alone, and leaves the model as it found it."""
    import itertools

    model = tiny_vit()
    model.train()
    x = torch.randn(3, 1, 32, 32)
    grid = attention.METHODS.get(method).grid
    combos = [dict(zip(grid, v)) for v in itertools.product(*grid.values())]
    hooks = hook_count(model)
    together = attention.extract_grid(method, model, x, combos)
    apart = [attention.extract(method, model, x, **p) for p in combos]
    assert len(together) == len(combos) == {"raw_cls": 2, "rollout": 9}.get(method, 1)
    for a, b in zip(together, apart):
        assert torch.equal(a, b)
    assert hook_count(model) == hooks and model.training
    if method == "rollout":  # the combinations differ: one forward pass serves nine different maps
        assert len({tuple(m.flatten().tolist()) for m in together}) == 9


@pytest.mark.parametrize("method", ["rollout", "raw_cls", "grad_rollout", "gradcam_tokens"])
def test_tune_method_scores_each_combination_as_localization_scores_does(method):
    """The tuned objective: each combination scored from one pass over the batches equals the method scored
    alone at that combination (class-specific methods explain the predicted class either way); the best
    mean wins, the first on a tie."""
    import itertools

    import numpy as np

    from mmpkd_core.evaluate import localization_scores, tune_method

    model = tiny_vit()
    torch.manual_seed(1)
    x = torch.randn(5, 1, 32, 32)
    masks = np.zeros((5, 32, 32), dtype=bool)
    for i, (r, c) in enumerate([(0, 0), (8, 16), (16, 8), (24, 24), (4, 20)]):
        masks[i, r:r + 8, c:c + 8] = True
    grid = attention.METHODS.get(method).grid
    combos = [dict(zip(grid, v)) for v in itertools.product(*grid.values())]
    means = [float(np.nanmean(localization_scores(model, x, masks, [method], ["relevance_mass"],
                                                  params={method: p})[(method, "relevance_mass")])) for p in combos]
    params, score = tune_method(model, x, masks, method, "relevance_mass")
    assert score == max(means)
    assert params == combos[means.index(max(means))]
    assert tune_method(model, x[:0], masks[:0], method, "relevance_mass")[0] is None  # no ROI image: nothing tuned
