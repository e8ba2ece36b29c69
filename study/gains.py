"""Gains against the matched baseline, per trial and grouped by factor levels (ablation tables).

The per-image pairs come from the ``gains_by_image`` view; everything statistical is computed here
(``study.stats``) and, per trial, written to the ``gains`` table at the end of each study.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.errors import StudyError
from study.stats import (BINARY_METRICS, PairingError, bootstrap_ci_columns, holm, mcnemar_p_columns,
                         paired_test, two_level_bootstrap_ci, wilcoxon_p)

CHANCE = ("uniform", "centre")
BINS = {
    "temperature": [0, 2, 4, 8, np.inf],
    "alpha": [0, 0.25, 0.5, 0.75, 1.0001],
    "beta": [0, 0.25, 0.5, 0.75, np.inf],
}
DIRECT = ("study", "domain", "teacher", "temperature", "alpha", "beta", "attention_method", "seed", "lr",
          "sampled_method", "weight_decay", "epochs")
FACTORS = DIRECT + tuple(f"{k}_bin" for k in BINS)


def image_gains(con, studies: list[str], metric: str | None = None) -> pd.DataFrame:
    """Per trial x method x metric x image: the trial's score, its baseline's, and the gain."""
    sql = "SELECT * FROM gains_by_image WHERE list_contains(?, study)"
    params: list = [studies]
    if metric:
        sql += " AND metric = ?"
        params.append(metric)
    df = con.execute(sql, params).df()
    missing = df[df["baseline_value_present"] == False]  # noqa: E712
    if len(missing):
        r = missing.iloc[0]
        raise PairingError(f"trial {r['study']}/{r['trial_id']}: image {r['image_id']} has no baseline score for "
                           f"{r['method']}/{r['metric']} ({len(missing)} such pairs); rerun the baseline")
    extra = con.execute("""
        SELECT count(*) FROM trials t JOIN trials b ON b.is_baseline AND b.status = 'completed'
            AND b.config_hash = t.baseline_key
        JOIN localization bl ON bl.study = b.study AND bl.trial_id = b.trial_id
        WHERE list_contains(?, t.study) AND NOT t.is_baseline AND t.status = 'completed'
          AND list_contains((SELECT list(DISTINCT method) FROM localization l WHERE l.study = t.study
                             AND l.trial_id = t.trial_id), bl.method)
          AND list_contains((SELECT list(DISTINCT metric) FROM localization l WHERE l.study = t.study
                             AND l.trial_id = t.trial_id), bl.metric)
          AND NOT EXISTS (SELECT 1 FROM localization l WHERE l.study = t.study AND l.trial_id = t.trial_id
                          AND l.method = bl.method AND l.metric = bl.metric AND l.image_id = bl.image_id)""",
                        [studies]).fetchone()[0]
    if extra:
        raise PairingError(f"{extra} baseline image scores have no trial score on the same image; "
                           "trial and baseline were evaluated on different images")
    return df.drop(columns=["baseline_value_present"])


def _with_bins(df: pd.DataFrame) -> pd.DataFrame:
    for k, edges in BINS.items():
        df[f"{k}_bin"] = pd.cut(df[k], edges, right=False).astype(str)
    return df


def trial_gains(con, studies: list[str], n_boot: int = 1000) -> pd.DataFrame:
    """Per trial x method x metric: mean gain over images, bootstrap interval, paired test, Holm
    within each (study, metric). Vectorised: every comparison of a study at once."""
    df = image_gains(con, studies)
    df = df[~df["method"].isin(CHANCE)]
    keys = ["study", "domain", "trial_id", "number", "seed", "teacher", "temperature", "alpha", "beta",
            "sampled_method", "method", "metric"]
    out = []
    for study, g in df.groupby("study", sort=True):
        g = g.assign(col=g.groupby(keys, dropna=False, sort=True).ngroup())
        columns = g.drop_duplicates("col").sort_values("col")[keys].reset_index(drop=True)
        v = g.pivot(index="image_id", columns="col", values="value").to_numpy(float)  # (images, comparisons)
        b = g.pivot(index="image_id", columns="col", values="baseline_value").to_numpy(float)
        d = v - b
        lo, hi = bootstrap_ci_columns(d, n_boot=n_boot)
        metrics = columns["metric"].to_numpy()
        binary = np.isin(metrics, BINARY_METRICS)
        valid = ~np.isnan(d)
        p = np.where(binary, mcnemar_p_columns(v > 0.5, b > 0.5, valid), np.nan)
        for j in np.flatnonzero(~binary):
            p[j] = wilcoxon_p(d[:, j])
        with np.errstate(invalid="ignore"):
            frame = columns.copy()
            frame["n_images"] = valid.sum(axis=0)
            frame["score"], frame["baseline"] = np.nanmean(v, axis=0), np.nanmean(b, axis=0)
            frame["gain"] = np.nanmean(d, axis=0)
        frame["ci_low"], frame["ci_high"], frame["p_value"] = lo, hi, p
        frame["test"] = np.where(binary, "mcnemar", "wilcoxon")
        out.append(frame)
    result = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=GAINS_COLUMNS)
    if len(result):
        result["p_holm"] = result.groupby(["study", "metric"])["p_value"].transform(lambda p: holm(p.to_numpy()))
    return result


def ablation(con, studies: list[str], by: list[str], metric: str, n_boot: int = 1000) -> pd.DataFrame:
    """Mean gain per factor level with a two-level bootstrap interval (trials, then images), a paired
    test on the pooled image pairs, Holm-corrected within the table, and the chance levels of the
    uniform and centre maps on the same images beside each row."""
    unknown = [f for f in by if f not in FACTORS]
    if unknown:
        from mmpkd_core.registry import did_you_mean

        raise StudyError(f"unknown factor '{unknown[0]}'.{did_you_mean(unknown[0], list(FACTORS))} "
                         f"Known: {', '.join(FACTORS)}")
    df = image_gains(con, studies, metric)
    if df.empty:
        raise StudyError(f"no completed trials with a baseline for metric '{metric}' in {', '.join(studies)}")
    df = _with_bins(df.rename(columns={"method": "attention_method"}))
    chance = df[df["attention_method"].isin(CHANCE)]
    df = df[~df["attention_method"].isin(CHANCE)]
    rows = []
    for level, g in df.groupby(by, sort=True, dropna=False):
        level = level if isinstance(level, tuple) else (level,)
        per_trial = [gg["gain"].to_numpy(float) for _, gg in g.groupby(["study", "trial_id"])]
        lo, hi = two_level_bootstrap_ci(per_trial, n_boot=n_boot)
        p, test = paired_test(metric, g["value"].to_numpy(float), g["baseline_value"].to_numpy(float))
        trials = set(zip(g["study"], g["trial_id"]))
        ch = chance[[k in trials for k in zip(chance["study"], chance["trial_id"])]]
        rows.append({**dict(zip(by, level)), "trials": len(per_trial), "images": len(g),
                     "score": float(np.nanmean(g["value"])), "baseline": float(np.nanmean(g["baseline_value"])),
                     "gain": float(np.nanmean([np.nanmean(x) for x in per_trial])), "ci_low": lo, "ci_high": hi,
                     "p_value": p, "test": test,
                     **{f"chance_{c}": float(np.nanmean(ch[ch["attention_method"] == c]["value"])) for c in CHANCE}})
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("test") + 1, "p_holm", holm(out["p_value"].to_numpy()))
    return out


def refresh_gains(store, study: str, n_boot: int = 1000) -> int:
    """Recompute the study's rows of the ``gains`` table (in one transaction); returns the row count."""
    g = trial_gains(store.con, [study], n_boot=n_boot)
    with store.transaction():
        store.con.execute("DELETE FROM gains WHERE study = ?", [study])
        if len(g):
            g = g[GAINS_COLUMNS]
            store.con.execute("INSERT INTO gains SELECT * FROM g")
    return len(g)


GAINS_COLUMNS = ["study", "domain", "trial_id", "number", "seed", "teacher", "temperature", "alpha", "beta",
                 "sampled_method", "method", "metric", "n_images", "score", "baseline", "gain", "ci_low", "ci_high",
                 "p_value", "test", "p_holm"]
