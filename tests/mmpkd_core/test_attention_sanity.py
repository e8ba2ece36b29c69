"""Sanity checks on a trained student, where the class evidence is a single bright blob."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from mmpkd_core import StudentConfig, TrialConfig, attention, localization
from mmpkd_core.data._draw import grid, lesion
from mmpkd_core.data.base import DomainData
from mmpkd_core.student import build_student
from mmpkd_core.trainer import to_tensors, train


def blob_domain(n=800, size=32, seed=0) -> DomainData:
    """Class 1: one bright blob on a flat noisy background; class 0: background alone."""
    rng = np.random.default_rng(seed)
    yy, xx = grid(n, size)
    y = (rng.random(n) < 0.5).astype(np.int64)
    blob, roi = lesion(yy, xx, rng.uniform(6, size - 6, n), rng.uniform(6, size - 6, n), rng.uniform(3, 4.5, n), 0.8 * y)
    img = np.clip(0.2 + blob + rng.normal(0, 0.05, (n, size, size)), 0, 1).astype(np.float32)
    split = np.array(["train"] * (n - 200) + ["val"] * 100 + ["test"] * 100)
    return DomainData("blob", "tabular", img[:, None], y, y, roi & (y[:, None, None] == 1), split,
                      np.array([str(i) for i in range(n)]))


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(2)
    data = blob_domain()
    cfg = TrialConfig(domain="blob", student=StudentConfig(patch_size=8, embed_dim=64, depth=3, num_heads=4,
                                                           epochs=12, lr=1e-3))
    t = to_tensors(data, None, torch.device("cpu"))
    model, history = train(cfg, data, t)
    assert history[-1]["val_auroc"] > 0.99
    te = data.index("test")
    roi = te[data.masks[te].any(axis=(1, 2))]
    return model, cfg, t.x[roi], data.masks[roi]


def relevance_mass(model, method, x, masks):
    maps = localization.upsample(attention.extract(method, model, x), masks.shape[-2:])
    return float(np.nanmean(localization.score("relevance_mass", maps, masks)))


@pytest.mark.parametrize("method", ["rollout", "grad_rollout"])
def test_trained_student_beats_uniform_on_relevance_mass(trained, method):
    model, _, x, masks = trained
    chance = relevance_mass(model, "uniform", x, masks)  # = the mean share of the image the blob covers
    assert relevance_mass(model, method, x, masks) > 1.5 * chance


@pytest.mark.parametrize("method", ["raw_cls", "rollout", "grad_rollout", "gradcam_tokens", "attnlrp"])
def test_maps_change_when_the_weights_are_randomised(trained, method):
    """Model-randomisation check (Adebayo et al. 2018): same architecture, random weights."""
    model, cfg, x, _ = trained
    torch.manual_seed(123)
    random_model = build_student(cfg.student, 32)
    a = attention.extract(method, model, x).flatten(1).numpy()
    b = attention.extract(method, random_model, x).flatten(1).numpy()
    rho = np.nanmean([spearmanr(a[i], b[i]).statistic for i in range(len(a))])
    assert rho < 0.5, rho


def test_method_parameters_are_tuned_on_validation_images_only(trained):
    from mmpkd_core.evaluate import tune_methods

    model, _, x, masks = trained
    chosen = tune_methods(model, x, masks, ["rollout", "raw_cls", "grad_rollout"], "relevance_mass")
    assert set(chosen) == {"rollout", "raw_cls"}  # grad_rollout has nothing to tune
    assert chosen["rollout"]["head_fusion"] in ("mean", "max", "min")
    best = relevance_mass_with(model, "rollout", x, masks, chosen["rollout"])
    for fusion in ("mean", "max", "min"):
        for ratio in (0.0, 0.5, 0.9):
            assert best >= relevance_mass_with(model, "rollout", x, masks, {"head_fusion": fusion, "discard_ratio": ratio})


def relevance_mass_with(model, method, x, masks, params):
    maps = localization.upsample(attention.extract(method, model, x, **params), masks.shape[-2:])
    return float(np.nanmean(localization.score("relevance_mass", maps, masks)))
