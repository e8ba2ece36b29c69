"""Paired statistics of localization gains: bootstrap intervals, signed-rank and McNemar tests, Holm.

A gain is a trial's score minus its matched baseline's on the *same* test image. Images are the
unit of pairing; with several seeds (or trials) per group, the interval comes from a two-level
bootstrap (resample seeds/trials, then images within each), so that it reflects both sources of
variation.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

BINARY_METRICS = ("pointing_game",)  # hit/miss metrics: McNemar; a shared tie counts as a hit above 0.5


class PairingError(ValueError):
    """The two sides of a paired comparison do not hold the same images."""


def bootstrap_ci(diffs: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean paired difference, resampling images."""
    d = np.asarray(diffs, float)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (zero differences dropped, as Wilcoxon proposed)."""
    d = np.asarray(diffs, float)
    d = d[~np.isnan(d)]
    if len(d) == 0 or np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def mcnemar_exact_p(trial_hits: np.ndarray, baseline_hits: np.ndarray) -> float:
    """Exact (binomial) McNemar p-value on the discordant pairs."""
    t, b = np.asarray(trial_hits, bool), np.asarray(baseline_hits, bool)
    gained, lost = int((t & ~b).sum()), int((~t & b).sum())
    if gained + lost == 0:
        return 1.0
    return float(stats.binomtest(gained, gained + lost, 0.5).pvalue)


def paired_test(metric: str, trial: np.ndarray, baseline: np.ndarray) -> tuple[float, str]:
    ok = ~(np.isnan(trial) | np.isnan(baseline))
    if metric in BINARY_METRICS:
        return mcnemar_exact_p(trial[ok] > 0.5, baseline[ok] > 0.5), "mcnemar"
    return wilcoxon_p(trial[ok] - baseline[ok]), "wilcoxon"


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if len(idx) == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def bootstrap_ci_columns(d: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``d`` (images x comparisons, NaN = no pair): the percentile interval of the mean,
    resampling images -- all columns at once, as one matrix product of resampling counts."""
    d = np.asarray(d, float)
    n = d.shape[0]
    if n == 0:
        return np.full(d.shape[1], np.nan), np.full(d.shape[1], np.nan)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)  # (n_boot, n)
    ok = ~np.isnan(d)
    a = (1 - level) / 2
    if ok.all():  # the common case: one matrix product, plain quantiles
        means = counts @ d / n  # (n_boot, columns)
        return np.quantile(means, a, axis=0), np.quantile(means, 1 - a, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (counts @ np.where(ok, d, 0.0)) / (counts @ ok)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no pair at all stays NaN
        return np.nanquantile(means, a, axis=0), np.nanquantile(means, 1 - a, axis=0)


def wilcoxon_p_columns(d: np.ndarray) -> np.ndarray:
    """``wilcoxon_p`` of each column (NaNs dropped per column): columns without NaN in one
    vectorised call, the others one by one."""
    d = np.asarray(d, float)
    p = np.empty(d.shape[1])
    full = ~np.isnan(d).any(axis=0)
    nonzero = (d != 0).any(axis=0)
    fast = full & nonzero
    if fast.any():
        with np.errstate(invalid="ignore", divide="ignore"):
            p[fast] = stats.wilcoxon(d[:, fast], axis=0, zero_method="wilcox").pvalue
    for j in np.flatnonzero(~fast):
        p[j] = wilcoxon_p(d[:, j])
    return p


def mcnemar_p_columns(trial_hits: np.ndarray, baseline_hits: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``mcnemar_exact_p`` of each column, vectorised (two-sided exact binomial on discordant pairs)."""
    t, b = np.asarray(trial_hits, bool) & valid, np.asarray(baseline_hits, bool) & valid
    gained = (t & ~b).sum(axis=0)
    lost = (~t & b).sum(axis=0)
    n = gained + lost
    p = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(gained, lost), np.maximum(n, 1), 0.5))
    return np.where(n == 0, 1.0, p)
