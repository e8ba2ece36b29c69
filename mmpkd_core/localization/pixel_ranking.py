"""``pixel_auroc`` and ``pixel_auprc``: how well the map's values rank mask pixels above the rest.

AUROC is the Mann-Whitney statistic with tied values given their average rank; AUPRC is average
precision with tied values entering together (one threshold per distinct value), as scikit-learn
computes it. Both vectorised over the batch. An empty mask (or a mask covering the whole image,
for AUROC) gives NaN.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from mmpkd_core.localization.base import METRICS, Metric, empty_to_nan


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    B = len(maps)
    flat, m = maps.reshape(B, -1), masks.reshape(B, -1)
    ranks = rankdata(flat, axis=1)  # average ranks for ties
    n_pos = m.sum(axis=1)
    n_neg = m.shape[1] - n_pos
    u = (ranks * m).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(n_neg > 0, u / (n_pos * n_neg), np.nan)
    return empty_to_nan(score, masks)


def pixel_auprc(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    B = len(maps)
    flat, m = maps.reshape(B, -1), masks.reshape(B, -1)
    P = flat.shape[1]
    order = np.argsort(-flat, axis=1, kind="stable")
    v = np.take_along_axis(flat, order, axis=1)
    pos = np.take_along_axis(m, order, axis=1).astype(np.float64)
    tp = np.cumsum(pos, axis=1)
    last = np.ones_like(v, dtype=bool)
    last[:, :-1] = v[:, :-1] != v[:, 1:]  # last pixel of each group of tied values
    group = np.cumsum(np.concatenate([np.zeros((B, 1), bool), last[:, :-1]], axis=1), axis=1)
    gid = (np.arange(B)[:, None] * P + group).ravel()
    pos_in_group = np.bincount(gid, weights=pos.ravel(), minlength=B * P).reshape(B, P)
    n_pos = np.maximum(pos.sum(axis=1, keepdims=True), 1)
    precision = tp / np.arange(1, P + 1)
    delta_recall = np.take_along_axis(pos_in_group, group, axis=1) / n_pos
    score = (last * delta_recall * precision).sum(axis=1)
    return empty_to_nan(score, masks)


METRICS.register("pixel_auroc")(Metric("pixel_auroc", pixel_auroc, binary=False))
METRICS.register("pixel_auprc")(Metric("pixel_auprc", pixel_auprc, binary=False))
