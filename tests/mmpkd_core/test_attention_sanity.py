"""Sanity checks on a trained student, where the class evidence is a single bright blob."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from mmpkd_core import StudentConfig, TrialConfig, attention, localization
from mmpkd_core.data._draw import grid, lesion
from mmpkd_core.data.base import DomainData
from mmpkd_core.student import build_student
from mmpkd_core.trainer import train, trial_inputs

pytestmark = pytest.mark.trains

# The thresholds below sit well inside what was measured (issue 13), so that another CPU, math library or thread
# count cannot cross them. Measured on an AVX-512 EPYC, 75 trainings in all: 10 (blob_domain seed, torch seed) pairs,
# (0..7, same), (0, 1), (1, 0), each under default settings, MKL_CBWR=COMPATIBLE, MKL_CBWR=AVX2 and
# ONEDNN_MAX_CPU_ISA=AVX2 (what an AVX2-only CPU runs: it reproduced the failing machine's 1.40 / 2.74 for seed 0);
# 7 of them also with ATEN_CPU_CAPABILITY=avx2, 5 with 1 thread; 22 more pairs (8..29, same) under default settings.
# The fixture's seed 0 moved between 1.40 and 1.55 (rollout over uniform) and 2.62 and 2.74 (grad_rollout) across
# the settings; seed 7 moved by 0.41 (rollout) and 1.32 (grad_rollout): a training can land elsewhere on another CPU.


def blob_domain(n=800, size=32, seed=0) -> DomainData:
    """Class 1: one bright blob on a flat noisy background; class 0: background alone."""
    rng = np.random.default_rng(seed)
    yy, xx = grid(n, size)
    y = (rng.random(n) < 0.5).astype(np.int64)
    blob, roi = lesion(yy, xx, rng.uniform(6, size - 6, n), rng.uniform(6, size - 6, n), rng.uniform(3, 4.5, n),
                       0.8 * y)
    img = np.clip(0.2 + blob + rng.normal(0, 0.05, (n, size, size)), 0, 1).astype(np.float32)
    split = np.array(["train"] * (n - 200) + ["val"] * 100 + ["test"] * 100)
    return DomainData("blob", "tabular", img[:, None], y, y, roi & (y[:, None, None] == 1), split,
                      np.array([str(i) for i in range(n)]))


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()  # process-wide: restored when the module's tests are done
    torch.set_num_threads(2)
    try:
        yield _train()
    finally:
        torch.set_num_threads(threads)


def _train():
    data = blob_domain()
    cfg = TrialConfig(domain="blob", student=StudentConfig(patch_size=8, embed_dim=64, depth=3, num_heads=4,
                                                           epochs=12, lr=1e-3))
    t = trial_inputs(data, None, torch.device("cpu"))
    model, history = train(cfg, data, t)
    assert history[-1]["val_auroc"] > 0.99  # measured 1.0 in every training above
    roi = data.roi_index("test")
    return model, cfg, torch.cat(list(t.batches(roi, 256))), data.masks[roi]


def relevance_mass(model, method, x, masks):
    maps = localization.upsample(attention.extract(method, model, x), masks.shape[-2:])
    return float(np.nanmean(localization.score("relevance_mass", maps, masks)))


# relevance mass as a multiple of the uniform map's, lowest over all the trainings above: rollout 1.27, grad_rollout
# 1.42 (means 1.55 and 2.89). An untrained student (torch seeds 0-4, 123) gave rollout 1.00, grad_rollout 0.80-1.10.
@pytest.mark.parametrize("method, times_chance", [("rollout", 1.1), ("grad_rollout", 1.2)])
def test_trained_student_beats_uniform_on_relevance_mass(trained, method, times_chance):
    model, cfg, x, masks = trained
    chance = relevance_mass(model, "uniform", x, masks)  # = the mean share of the image the blob covers
    assert relevance_mass(model, method, x, masks) > times_chance * chance
    torch.manual_seed(123)
    untrained = build_student(cfg.student, 32)
    assert relevance_mass(untrained, method, x, masks) < times_chance * chance  # the bar is above chance


@pytest.mark.parametrize("method", ["raw_cls", "rollout", "grad_rollout", "gradcam_tokens", "attnlrp"])
def test_maps_change_when_the_weights_are_randomised(trained, method):
    """Model-randomisation check (Adebayo et al. 2018): same architecture, random weights."""
    model, cfg, x, _ = trained
    torch.manual_seed(123)
    random_model = build_student(cfg.student, 32)
    a = attention.extract(method, model, x).flatten(1).numpy()
    b = attention.extract(method, random_model, x).flatten(1).numpy()
    rho = np.nanmean([spearmanr(a[i], b[i]).statistic for i in range(len(a))])
    assert rho < 0.5, rho  # highest over the five methods and all the trainings above: 0.32


def test_method_parameters_are_tuned_on_validation_images_only(trained):
    from mmpkd_core.evaluate import tune_methods

    model, _, x, masks = trained
    chosen = tune_methods(model, x, masks, ["rollout", "raw_cls", "grad_rollout"], "relevance_mass")
    assert set(chosen) == {"rollout", "raw_cls"}  # grad_rollout has nothing to tune
    assert chosen["rollout"]["head_fusion"] in ("mean", "max", "min")
    best = relevance_mass_with(model, "rollout", x, masks, chosen["rollout"])
    for fusion in ("mean", "max", "min"):
        for ratio in (0.0, 0.5, 0.9):
            assert best >= relevance_mass_with(model, "rollout", x, masks,
                                               {"head_fusion": fusion, "discard_ratio": ratio})


def relevance_mass_with(model, method, x, masks, params):
    maps = localization.upsample(attention.extract(method, model, x, **params), masks.shape[-2:])
    return float(np.nanmean(localization.score("relevance_mass", maps, masks)))
