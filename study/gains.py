"""Gains against the matched baseline: the per-image pairs, and per trained model.

The per-image pairs come from the database as arrays (``load_pairs``); per trained model, the gain
and its image-level interval are written to the ``gains`` table at the end of each study. What a
recipe or a factor level gains, inferred over seeds, is ``study.ablation``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.stats import BINARY_METRICS, PairingError, bootstrap_ci_columns, holm, mcnemar_p_columns, wilcoxon_p_columns

CHANCE = ("uniform", "centre")
BINS = {
    "temperature": [0, 2, 4, 8, np.inf],
    "alpha": [0, 0.25, 0.5, 0.75, 1.0001],
    "beta": [0, 0.25, 0.5, 0.75, np.inf],
}
DIRECT = ("study", "domain", "teacher", "temperature", "alpha", "beta", "attention_method", "seed", "lr",
          "sampled_method", "weight_decay", "epochs")
FACTORS = DIRECT + tuple(f"{k}_bin" for k in BINS)


KEYS = ["study", "domain", "trial_id", "number", "seed", "teacher", "temperature", "alpha", "beta", "lr",
        "weight_decay", "epochs", "sampled_method", "method", "metric"]


@dataclass
class Pairs:
    """Every (trial x method x metric) comparison with its per-image scores and its baseline's.

    Row i of ``value``/``baseline`` belongs to row i of ``keys``; columns are the study's test images
    in id order (studies with fewer images are padded with NaN, which no statistic counts)."""

    keys: pd.DataFrame
    value: np.ndarray  # (comparisons, images)
    baseline: np.ndarray  # (comparisons, images)

    @property
    def gain(self) -> np.ndarray:
        return self.value - self.baseline

    def take(self, rows: np.ndarray) -> "Pairs":
        """The comparisons of ``rows`` (positions), renumbered from 0."""
        return Pairs(self.keys.iloc[rows].reset_index(drop=True), self.value[rows], self.baseline[rows])


PAIRS_SQL = """
WITH b AS (SELECT config_hash, science_version, any_value(study) AS study, any_value(trial_id) AS trial_id FROM trials
           WHERE is_baseline AND status = 'completed' GROUP BY config_hash, science_version),
tg AS (SELECT l.study, l.trial_id, l.method, l.metric, list(l.image_id ORDER BY l.image_id) AS ids,
              list(l.value ORDER BY l.image_id) AS v
       FROM localization l SEMI JOIN trials t ON t.study = l.study AND t.trial_id = l.trial_id
            AND NOT t.is_baseline AND t.status = 'completed'
       WHERE {where} GROUP BY ALL),
bg AS (SELECT l.study, l.trial_id, l.method, l.metric, list(l.image_id ORDER BY l.image_id) AS ids,
              list(l.value ORDER BY l.image_id) AS v
       FROM localization l SEMI JOIN b ON b.study = l.study AND b.trial_id = l.trial_id GROUP BY ALL)
SELECT t.study, t.domain, t.trial_id, t.number, t.seed, t.teacher, t.temperature, t.alpha, t.beta, t.lr,
       t.weight_decay, t.epochs, t.attention_method AS sampled_method, tg.method, tg.metric,
       tg.v, bg.v AS bv, coalesce(tg.ids = bg.ids, false) AS paired,
       CASE WHEN coalesce(tg.ids = bg.ids, false) THEN NULL ELSE tg.ids END AS bad_ids,
       CASE WHEN coalesce(tg.ids = bg.ids, false) THEN NULL ELSE bg.ids END AS bad_bids,
       t.science_version AS sv,
       CASE WHEN bg.v IS NULL THEN (SELECT list(DISTINCT x.science_version) FROM trials x WHERE x.is_baseline
            AND x.status = 'completed' AND x.config_hash = t.baseline_key
            AND x.science_version IS DISTINCT FROM t.science_version) END AS other_versions
FROM tg JOIN trials t ON t.study = tg.study AND t.trial_id = tg.trial_id
LEFT JOIN b ON b.config_hash = t.baseline_key AND b.science_version IS NOT DISTINCT FROM t.science_version
LEFT JOIN bg ON bg.study = b.study AND bg.trial_id = b.trial_id AND bg.method = tg.method AND bg.metric = tg.metric
ORDER BY t.study, t.trial_id, tg.method, tg.metric
"""


READY = """EXISTS (SELECT 1 FROM trials rt JOIN trials rb ON rb.config_hash = rt.baseline_key AND rb.is_baseline
                AND rb.status = 'completed' AND rb.science_version IS NOT DISTINCT FROM rt.science_version
                WHERE rt.study = l.study AND rt.trial_id = l.trial_id)"""


def load_pairs(con, studies: list[str], metric: str | None = None, chance: bool = False,
               ready_only: bool = False) -> Pairs:
    """Every comparison's per-image scores and its matched baseline's, as arrays: the database groups
    each (trial, method, metric) into one ordered list and hands them over as Arrow, so no Python
    object is made per image. A trial image without its baseline score (or the reverse) is an error,
    never a silent drop. ``ready_only`` (a study still running): only the trials whose baseline has
    finished."""
    where, params = "list_contains($studies, l.study)", {"studies": studies}
    if ready_only:
        where += f" AND {READY}"
    if metric:
        where += " AND l.metric = $metric"
        params["metric"] = metric
    if not chance:
        where += " AND l.method NOT IN ('uniform', 'centre')"
    cur = con.cursor()  # its own result stream, whatever the connection has pending
    try:
        table = cur.sql(PAIRS_SQL.format(where=where), params=params).to_arrow_table()
    finally:
        cur.close()
    paired = table.column("paired").to_numpy(zero_copy_only=False)
    if not paired.all():
        _raise_unpaired(table, int(np.flatnonzero(~paired)[0]), int((~paired).sum()))
    keys = table.select(KEYS).to_pandas()
    return Pairs(keys, _matrix(table.column("v")), _matrix(table.column("bv")))


def _matrix(column) -> np.ndarray:
    """An Arrow list column -> (rows, longest list) float array, NaN for nulls and padding."""
    lists = column.combine_chunks()
    flat = np.asarray(lists.flatten().to_numpy(zero_copy_only=False), dtype=float)  # nulls -> NaN
    offsets = lists.offsets.to_numpy()
    counts = np.diff(offsets)
    width = int(counts.max()) if len(counts) else 0
    if len(counts) and (counts == width).all():
        return flat.reshape(len(counts), width)
    out = np.full((len(counts), width), np.nan)
    for i, (s0, n) in enumerate(zip(offsets[:-1], counts)):
        out[i, :n] = flat[s0:s0 + n]
    return out


def _raise_unpaired(table, i: int, n_bad: int):
    row = {k: table.column(k)[i].as_py() for k in ("study", "trial_id", "method", "metric", "bad_ids", "bad_bids", "sv",
                                                   "other_versions")}
    where = f"trial {row['study']}/{row['trial_id']} ({row['method']}/{row['metric']})"
    if row["bad_bids"] is None and row["other_versions"]:
        from mmpkd_core.version import describe

        raise PairingError(f"{where} was made by {describe(row['sv'])}, its baseline only by "
                           f"{' and '.join(describe(v) for v in row['other_versions'])}: numbers of different engines "
                           "are never paired; run the study again with one engine (study run SPEC --name NEW)")
    if row["bad_bids"] is None:
        raise PairingError(f"{where} has no completed baseline with its scores; rerun the baseline")
    only_t = sorted(set(row["bad_ids"]) - set(row["bad_bids"]))[:3]
    only_b = sorted(set(row["bad_bids"]) - set(row["bad_ids"]))[:3]
    raise PairingError(f"{where}: trial and baseline hold different images (only in trial {only_t}, only in "
                       f"baseline {only_b}; {n_bad} such comparisons); rerun the baseline or the trial")


def with_bins(df: pd.DataFrame) -> pd.DataFrame:
    for k, edges in BINS.items():
        df[f"{k}_bin"] = pd.cut(df[k], edges, right=False).astype(str)
    return df


def quiet_nanmean(x: np.ndarray, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row (an undefined metric) stays NaN
        return np.nanmean(x, axis=axis)


def trial_gains(con, studies: list[str], n_boot: int = 1000, ready_only: bool = False,
                pairs: Pairs | None = None) -> pd.DataFrame:
    """Per trained model (trial) x method x metric: mean gain over its test images, and how sure we
    are about *this model on this test set* (``model_``: image bootstrap, paired image test, Holm
    within each (study, metric)). Not a recipe effect: that is ``study.ablation.recipe_gains``.
    ``pairs``: those of ``load_pairs`` already loaded (the chance maps' rows are left out here)."""
    if pairs is None:
        pairs = load_pairs(con, studies, ready_only=ready_only)
    else:
        pairs = pairs.take(np.flatnonzero(~pairs.keys["method"].isin(CHANCE).to_numpy()))
    out = pairs.keys.copy()
    if out.empty:
        return pd.DataFrame(columns=GAINS_COLUMNS)
    v, b, d = pairs.value, pairs.baseline, pairs.gain
    valid = ~np.isnan(d)
    lo, hi = bootstrap_ci_columns(d.T, n_boot=n_boot)
    binary = out["metric"].isin(BINARY_METRICS).to_numpy()
    p = np.where(binary, mcnemar_p_columns((v > 0.5).T, (b > 0.5).T, valid.T), np.nan)
    if (~binary).any():
        p[~binary] = wilcoxon_p_columns(d[~binary].T)
    out["n_images"] = valid.sum(axis=1)
    out["score"], out["baseline"], out["gain"] = quiet_nanmean(v, 1), quiet_nanmean(b, 1), quiet_nanmean(d, 1)
    out["model_ci_low"], out["model_ci_high"], out["model_p_value"] = lo, hi, p
    out["model_test"] = np.where(binary, "mcnemar", "wilcoxon")
    out["model_p_holm"] = out.groupby(["study", "metric"])["model_p_value"].transform(lambda x: holm(x.to_numpy()))
    return out


def two_level_rows(d: np.ndarray, n_boot: int, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Two-level bootstrap interval of the mean over trials (rows of ``d``) of each trial's mean over
    images: resample trials, then images within each."""
    return percentile_interval(two_level_draws(d, n_boot, seed), level)


def percentile_interval(means: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.nanquantile(means, a)), float(np.nanquantile(means, 1 - a))


def two_level_draws(d: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """``n_boot`` bootstrap means (trials, then images within each); vectorised with one
    resampling-count matrix for the images."""
    T, n = d.shape
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)  # (n_boot, images)
    ok = ~np.isnan(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_trial = (counts @ np.where(ok, d, 0.0).T) / (counts @ ok.T)  # (n_boot, T)
    picks = rng.integers(0, T, size=(n_boot, T))
    return quiet_nanmean(np.take_along_axis(per_trial, picks, axis=1), 1)


GAINS_COLUMNS = ["study", "domain", "trial_id", "number", "seed", "teacher", "temperature", "alpha", "beta",
                 "sampled_method", "method", "metric", "n_images", "score", "baseline", "gain", "model_ci_low",
                 "model_ci_high", "model_p_value", "model_test", "model_p_holm"]
