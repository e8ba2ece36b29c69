"""Seed-level inference: the unit is what varies when the experiment is repeated.

A trained model is one draw of a recipe. Its test images say how sure we are about that model;
training seeds (and, for a level that pools recipes, the recipes) say how sure we are about the
recipe. So a gain is inferred from *unit gains* -- per seed: the mean over test images of the
recipe's score minus the score of the baseline trained with the same seed -- with

- a t-interval on n - 1 degrees of freedom (Student; Cameron, Gelbach & Miller 2008 for few
  clusters), whose coverage ``study.calibration`` measures on simulated A/A studies;
- an exact sign-flip (permutation) p-value over the same units. With n units its smallest
  two-sided value is 2 / 2^n (0.25 at 3 seeds), so every row carries that floor and whether it can
  reach the Holm-adjusted level at all.

Every function here takes a batch: rows are independent questions, columns their units.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

ALPHA = 0.05
LEVEL = 0.95
MAX_FLIPS = 25_000_000  # numbers one vectorised call of the sign-flip test may hold (200 MB)
EXACT_UP_TO = 16  # units: up to 2^16 sign patterns are enumerated; beyond, 20,000 random flips

UNIT_RECIPE_ONE_SEED = "recipe (1 seed: the baseline's seed variation is not counted)"
UNIT_RECIPE_X_SEED = "recipe x seed (two-way)"
UNIT_SEED = "seed"
UNIT_PAIRED_SEED = "seed (paired)"
UNIT_RECIPE_WELCH = "recipe (Welch)"
UNIT_ONE_MODEL = "images of 1 model"
ONE_SEED_NOTE = "1 seed: intervals show test-set sampling only, not training-seed variation"


def _mean_fn(x, axis):
    return np.mean(x, axis=axis)


def t_intervals(units: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``units`` (rows x n, n >= 2, no NaN): mean and the t-interval on n - 1 df.
    A row whose units are all equal has a zero-width interval at its mean."""
    u = np.asarray(units, float)
    mean = u.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # units equal up to rounding: a (near) zero-width interval
        ci = stats.ttest_1samp(u, 0.0, axis=1).confidence_interval(level)
    lo, hi = np.asarray(ci.low, float), np.asarray(ci.high, float)
    flat = np.ptp(u, axis=1) == 0
    lo[flat], hi[flat] = mean[flat], mean[flat]
    return mean, lo, hi


def sign_flip_p(units: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per row of ``units`` (rows x n): the two-sided sign-flip permutation p-value of the mean
    (scipy's ``permutation_test``; exact, every sign pattern, up to ``EXACT_UP_TO`` units)."""
    u = np.asarray(units, float)
    p = np.ones(len(u))
    live = ~np.all(u == 0, axis=1)  # no difference at all: p = 1
    if live.any():
        n = u.shape[1]
        draws = 2 ** n if n <= EXACT_UP_TO else 20_000
        # sign patterns per vectorised call: all at once unless that would hold more than MAX_FLIPS numbers
        # (a level of 5,000 recipes in a study of 10,000 trials: 20,000 x 5,000 per row, gigabytes)
        batch = None if draws * int(live.sum()) * n <= MAX_FLIPS else max(1, MAX_FLIPS // (int(live.sum()) * n))
        res = stats.permutation_test((u[live],), _mean_fn, permutation_type="samples", vectorized=True, axis=-1,
                                     n_resamples=np.inf if n <= EXACT_UP_TO else 20_000, alternative="two-sided",
                                     rng=np.random.default_rng(seed), batch=batch)
        p[live] = np.minimum(1.0, res.pvalue)
    return p


def p_floor(n) -> np.ndarray:
    """The smallest two-sided p-value an exact sign-flip test over n units can give: 2 / 2^n."""
    n = np.asarray(n, float)
    return np.where(n >= 1, np.minimum(1.0, np.exp2(1.0 - n)), 1.0)  # 2 / 2^n, without overflow at large n


def reachable(n, m: int, alpha: float = ALPHA) -> np.ndarray:
    """Whether a row with n units can be significant at all in a Holm family of m tests: its
    floor must not exceed alpha / m (Holm's first, strictest step)."""
    return (np.asarray(n) >= 2) & (p_floor(n) <= alpha / max(m, 1) + 1e-15)


def infer(unit_lists: list[np.ndarray], level: float = LEVEL) -> dict[str, np.ndarray]:
    """Mean, t-interval and sign-flip p for each list of unit gains (lists of different lengths are
    batched by length). Lists with fewer than 2 units get NaN: they say nothing about seeds."""
    k = len(unit_lists)
    out = {key: np.full(k, np.nan) for key in ("mean", "ci_low", "ci_high", "p_value")}
    out["n"] = np.array([len(u) for u in unit_lists], int)
    for i, u in enumerate(unit_lists):
        if len(u):
            out["mean"][i] = float(np.mean(u))
    for n in sorted(set(out["n"]) - {0, 1}):
        rows = np.flatnonzero(out["n"] == n)
        u = np.stack([np.asarray(unit_lists[i], float) for i in rows])
        _, out["ci_low"][rows], out["ci_high"][rows] = t_intervals(u, level)
        out["p_value"][rows] = sign_flip_p(u)
    return out


def two_way(cells: np.ndarray, level: float = LEVEL) -> tuple[float, float, float, float, float]:
    """Mean of a (recipes x seeds) table of unit gains (NaN: a missing cell) whose recipes share the
    baseline of each seed, so that recipes and seeds are crossed: the variance of the grand mean
    counts both, V = s2(recipe means)/R + s2(seed means)/S - MS_resid/(R S) (the two-way ANOVA
    estimator; Cameron, Gelbach & Miller 2011 for two-way clustering), with Satterthwaite df. If V is
    not positive, the larger one-way term. Returns (mean, low, high, p, df)."""
    c = np.asarray(cells, float)
    ok = ~np.isnan(c)
    c = c[ok.any(axis=1)][:, ok.any(axis=0)]
    R, S = c.shape
    with np.errstate(invalid="ignore"):
        rm, sm, grand = np.nanmean(c, axis=1), np.nanmean(c, axis=0), float(np.nanmean(c))
        resid = c - rm[:, None] - sm[None, :] + grand
    v_r, v_s = np.var(rm, ddof=1) / R, np.var(sm, ddof=1) / S
    df_e = max(1, int(np.sum(~np.isnan(resid))) - R - S + 1)
    v_e = np.nansum(resid ** 2) / df_e / (R * S)
    v = v_r + v_s - v_e
    terms = [(v_r, R - 1), (v_s, S - 1), (v_e, df_e)]
    if not v > 0:
        v, terms = max(v_r, v_s), [max((v_r, R - 1), (v_s, S - 1))]
    if v == 0:
        return grand, grand, grand, 1.0 if grand == 0 else 0.0, float(min(R, S) - 1)
    df = v ** 2 / sum(t ** 2 / d for t, d in terms)
    half = stats.t.ppf(0.5 + level / 2, df) * np.sqrt(v)
    p = 2 * stats.t.sf(abs(grand) / np.sqrt(v), df)
    return grand, grand - half, grand + half, float(p), float(df)


def welch(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Difference of two groups' means of units with Welch's interval and p-value (unequal
    variances, Welch-Satterthwaite df)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread on either side: the difference is what it is
        return diff, diff, 1.0 if diff == 0 else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(level)
    return float(ci.low), float(ci.high), float(res.pvalue)
