"""Coverage of the engine's intervals, measured on simulated A/A studies (no training).

A two-level model of what a study stores. Each simulated study has its own test images, with a
difficulty ``u_i`` shared by every model scored on them. Each trained model -- a recipe's student
or the matched baseline, one per seed -- draws a model effect ``m`` (normal, or skewed: a centred
gamma with skewness 1.4, or 2.8 when heavily skewed) and a per-image disagreement ``e_i``. Its score on image i is

- binary (like pointing game): a hit with probability sigmoid(a + u_i + m + e_i + effect);
- bounded continuous (like relevance mass): sigmoid(a + u_i + m + e_i + effect).

Under A/A (effect 0) the recipe and its baselines are draws of the same distribution, so a 95%
interval of the gain should cover 0 in 95% of studies. ``run`` pushes the simulated pairs through
``study.ablation.ablation_table`` -- the code ``study ablate`` runs after loading the pairs from
DuckDB -- so the coverage measured is the engine's own. ``old_bootstrap`` gives the interval the
engine used before (two-level percentile bootstrap: seeds, then images) on the same studies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.ablation import ablation_table
from study.gains import KEYS, Pairs, two_level_rows

SCENARIOS = {  # name -> (metric, seed effect)
    "pointing_game, normal seed effect": ("pointing_game", "normal"),
    "relevance_mass, normal seed effect": ("relevance_mass", "normal"),
    "relevance_mass, skewed seed effect": ("relevance_mass", "skewed"),
    "pointing_game, skewed seed effect": ("pointing_game", "skewed"),
}
SKEW_SHAPE = {"skewed": 2.0, "heavily skewed": 0.5}  # gamma shape: skewness 2 / sqrt(shape) = 1.4, 2.8


@dataclass(frozen=True)
class Model:
    intercept: float = -0.3
    sd_image: float = 1.0  # image difficulty, shared by every model scored on the image
    sd_model: float = 0.4  # a trained model's own effect (seed to seed)
    sd_pair: float = 0.6  # model x image disagreement
    sd_recipe: float = 0.3  # recipe to recipe (levels that pool several recipes)


def _model_effect(rng, kind: str, size, sd: float) -> np.ndarray:
    if kind in SKEW_SHAPE:
        shape = SKEW_SHAPE[kind]
        return sd * (rng.gamma(shape, 1.0, size) - shape) / np.sqrt(shape)
    return rng.normal(0, sd, size)


def simulate(studies: int, seeds: int, metric: str, seed_effect: str = "normal", effect: float = 0.0,
             recipes: int = 1, images: int = 60, model: Model = Model(), seed: int = 0) -> Pairs:
    """``studies`` independent simulated studies, each one level of ``recipes`` recipes x ``seeds``
    seeds, every recipe-seed paired with the baseline of its seed, as the pairs ``load_pairs`` returns."""
    rng = np.random.default_rng(seed)
    S, R, N = studies, recipes, seeds
    u = rng.normal(0, model.sd_image, (S, 1, 1, images))
    recipe = rng.normal(0, model.sd_recipe, (S, R, 1, 1)) if R > 1 else 0.0
    logit_t = (model.intercept + u + recipe + effect + _model_effect(rng, seed_effect, (S, R, N, 1), model.sd_model)
               + rng.normal(0, model.sd_pair, (S, R, N, images)))
    logit_b = (model.intercept + u + _model_effect(rng, seed_effect, (S, 1, N, 1), model.sd_model)
               + rng.normal(0, model.sd_pair, (S, 1, N, images)))
    p_t, p_b = 1 / (1 + np.exp(-logit_t)), np.broadcast_to(1 / (1 + np.exp(-logit_b)), logit_t.shape)
    if metric == "pointing_game":
        value = (rng.random(p_t.shape) < p_t).astype(float)
        base = (rng.random(p_b.shape) < p_b).astype(float)
    else:
        value, base = p_t, np.array(p_b)
    s, r, n = np.meshgrid(np.arange(S), np.arange(R), np.arange(N), indexing="ij")
    s, r, n = s.ravel(), r.ravel(), n.ravel()
    keys = pd.DataFrame({"study": [f"sim{i:05d}" for i in s], "domain": "simulated",
                         "trial_id": [f"{a:04d}.s{b}" for a, b in zip(r, n)], "number": r, "seed": n,
                         "teacher": "mlp", "temperature": 2.0, "alpha": 0.5, "beta": 0.0, "lr": 1e-3,
                         "weight_decay": 0.05, "epochs": 1, "sampled_method": "rollout", "method": "rollout",
                         "metric": metric})[KEYS]
    return Pairs(keys, value.reshape(S * R * N, images), base.reshape(S * R * N, images))


def run(pairs: Pairs) -> pd.DataFrame:
    """The engine's ablation rows, one per simulated study."""
    return ablation_table(pairs, ["study"], n_boot=200)


def old_bootstrap(pairs: Pairs, n_boot: int = 1000) -> np.ndarray:
    """(studies x 2): the two-level percentile bootstrap the engine used before, per study."""
    d = pairs.gain
    studies = pairs.keys["study"].to_numpy()
    return np.array([two_level_rows(d[studies == s], n_boot) for s in pd.unique(studies)])


def coverage(low, high, truth: float = 0.0) -> float:
    return float(np.mean((np.asarray(low) <= truth) & (truth <= np.asarray(high))))


def detection(low, high) -> float:
    """The share of intervals that exclude zero."""
    return float(np.mean((np.asarray(low) > 0) | (np.asarray(high) < 0)))
