"""``cnr``: contrast-to-noise ratio as in the BioViL papers (Boecking et al. 2022):

    CNR = |mean_in - mean_out| / sqrt(var_in + var_out)

over the map's values inside and outside the mask. Unbounded (not a [0, 1] ratio). A map without
contrast scores 0; a map with contrast but no variance anywhere (a perfect binary map) has no
defined CNR and gives NaN, as does an empty or full mask.
"""
from __future__ import annotations

import numpy as np

from mmpkd_core.localization.base import METRICS, Metric, empty_to_nan


def cnr(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    B = len(maps)
    flat, m = maps.reshape(B, -1).astype(np.float64), masks.reshape(B, -1)
    n_in, n_out = m.sum(axis=1), (~m).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_in = (flat * m).sum(axis=1) / n_in
        mu_out = (flat * ~m).sum(axis=1) / n_out
        var_in = (((flat - mu_in[:, None]) ** 2) * m).sum(axis=1) / n_in
        var_out = (((flat - mu_out[:, None]) ** 2) * ~m).sum(axis=1) / n_out
        num, den = np.abs(mu_in - mu_out), np.sqrt(var_in + var_out)
        score = np.where(den > 0, num / den, np.where(num == 0, 0.0, np.nan))
    score[(n_in == 0) | (n_out == 0)] = np.nan
    return empty_to_nan(score, masks)


METRICS.register("cnr")(Metric("cnr", cnr, binary=False))
