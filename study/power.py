"""How many seeds a question needs: variance components from a pilot study, then a power analysis.

From a stored study whose recipes ran with two or more seeds, per attention method x metric:

- ``sd_gain``: the spread of a recipe's per-seed gains over the matched baselines (pooled within
  recipes, ``df`` = sum over recipes of seeds - 1). It is what the seed-level t-interval sees.
- ``sd_image``: the part of it that test-set sampling explains (per model, the variance of the
  per-image differences over the number of images, averaged), and ``sd_seed`` the rest: training-
  seed variation of the recipe and of its baseline together.
- ``sd_gain_ucb``: a one-sided upper confidence bound on ``sd_gain`` (chi-square on ``df``), so that
  a small pilot's own uncertainty about the spread is counted (Colas et al. 2018: pilot, then power).
- ``seeds``: the fewest seeds for which a two-sided one-sample t-test of the per-seed gains at
  ``alpha`` detects ``effect`` with ``power`` when the spread is ``sd_gain_ucb`` (statsmodels'
  ``TTestPower``); ``seeds_point`` the same at the estimate itself. The exact sign-flip p-value
  beside each interval needs at least ``SIGN_FLIP_MIN`` seeds to go below 0.05 at all.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from study.errors import StudyError
from study.gains import quiet_nanmean, load_pairs

MAX_SEEDS = 1000


def sign_flip_min(alpha: float = 0.05) -> int:
    """The fewest units whose exact two-sided sign-flip p-value can be at most ``alpha``."""
    return int(math.ceil(math.log2(2 / alpha)))


SIGN_FLIP_MIN = sign_flip_min()


def seeds_needed(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05) -> int | None:
    """The smallest n >= 2 whose one-sample two-sided t-test has at least ``power`` against
    ``effect`` when the per-seed gains spread by ``sd``; None past ``MAX_SEEDS``."""
    from statsmodels.stats.power import TTestPower

    if not sd > 0:
        return 2
    n = np.arange(2, MAX_SEEDS + 1)
    d = abs(effect) / sd
    with np.errstate(invalid="ignore"):
        got = TTestPower().power(effect_size=d, nobs=n, alpha=alpha, alternative="two-sided")
    # statsmodels' noncentral t gives NaN for very large effects; there the normal approximation (power ~ 1) holds
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    approx = stats.norm.cdf(d * np.sqrt(n) - crit) + stats.norm.cdf(-d * np.sqrt(n) - crit)
    reached = np.where(np.isnan(got), approx, got) >= power
    return int(n[np.argmax(reached)]) if reached.any() else None


def variance_components(con, study: str, metric: str | None = None, confidence: float = 0.9) -> pd.DataFrame:
    """Per attention method x metric: seed and image variance components of the per-seed gains."""
    pairs = load_pairs(con, [study], metric)
    if pairs.keys.empty:
        raise StudyError(f"study '{study}' has no completed trials with a baseline"
                         + (f" for metric '{metric}'" if metric else ""))
    k = pairs.keys
    d = pairs.gain
    n_img = (~np.isnan(d)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        img_var = np.nanvar(d, axis=1, ddof=1) / n_img
    frame = pd.DataFrame({"method": k["method"], "metric": k["metric"], "recipe": k["number"].fillna(-1),
                          "seed": k["seed"], "gain": quiet_nanmean(d, 1), "img_var": img_var})
    rows = []
    for (method, m), g in frame.groupby(["method", "metric"], sort=True):
        per_recipe = g.groupby("recipe")["gain"]
        dev = g["gain"] - per_recipe.transform("mean")
        df = int((per_recipe.size() - 1).sum())
        if df < 1:
            raise StudyError(f"study '{study}' ran every recipe with 1 seed; 'study seeds' needs 2 or more seeds "
                             "per recipe to estimate the seed variance: set 'seeds: [0, 1, 2]' in the spec and run it")
        var_gain = float((dev ** 2).sum() / df)
        var_img = float(np.nanmean(g["img_var"]))
        ucb = df * var_gain / stats.chi2.ppf(1 - confidence, df)
        rows.append({"method": method, "metric": m, "recipes": int(per_recipe.ngroups),
                     "seeds_per_recipe": float(per_recipe.size().mean()), "df": df,
                     "sd_gain": math.sqrt(var_gain), "sd_seed": math.sqrt(max(0.0, var_gain - var_img)),
                     "sd_image": math.sqrt(var_img), "sd_gain_ucb": math.sqrt(ucb)})
    return pd.DataFrame(rows)


def seed_plan(con, study: str, effect: float, power: float = 0.8, metric: str | None = None,
              alpha: float = 0.05, confidence: float = 0.9) -> pd.DataFrame:
    """``variance_components`` with the seeds needed to detect ``effect`` (see the module docstring)."""
    if not effect > 0:
        raise StudyError(f"--effect {effect}: give the smallest gain worth detecting, a positive number "
                         "on the metric's scale (e.g. 0.05 for 5 points of pointing game)")
    if not 0 < power < 1:
        raise StudyError(f"--power {power}: give a probability between 0 and 1, e.g. 0.8")
    t = variance_components(con, study, metric, confidence)
    t["effect"] = effect
    t["seeds"] = [seeds_needed(effect, sd, power, alpha) for sd in t["sd_gain_ucb"]]
    t["seeds_point"] = [seeds_needed(effect, sd, power, alpha) for sd in t["sd_gain"]]
    return t
