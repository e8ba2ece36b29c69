"""Ablation tables and recipe gains, inferred over seeds (or recipes), never over images alone.

A row is a factor level (or one recipe). Its unit gains are built bottom-up from the per-image pairs
of ``study.gains.load_pairs``: per trained model (one trial = one recipe x one seed), the mean over
test images of its score minus the score of the baseline trained with the same seed (averaged over
the attention methods the level pools, which all read the same model). Then:

- one recipe, two or more seeds: inferred over seeds (t on seeds - 1 df, exact sign-flip p);
- two or more recipes, two or more seeds: the recipes share each seed's baseline, so recipes and
  seeds are crossed; the two-way estimator counts recipe-to-recipe and seed-to-seed variation;
- two or more recipes of one seed: inferred over recipes, and the row says that the one baseline's
  seed variation is not counted;
- a single trained model: only its test images (image bootstrap), and the row says so.

``study.inference`` does the statistics; ``study.calibration`` measures their coverage.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from study.errors import StudyError
from study.gains import (CHANCE, FACTORS, Pairs, load_pairs, percentile_interval, quiet_nanmean, two_level_draws,
                         with_bins)
from study.inference import (ALPHA, UNIT_ONE_MODEL, UNIT_PAIRED_SEED, UNIT_RECIPE_ONE_SEED, UNIT_RECIPE_WELCH,
                             UNIT_RECIPE_X_SEED, UNIT_SEED, infer, p_floor, reachable, two_way, welch)
from study.stats import bootstrap_ci, bootstrap_ci_columns, holm

RECIPE_BY = ["study", "domain", "number", "attention_method"]
RECIPE_GAINS_COLUMNS = ["study", "domain", "number", "method", "metric", "unit", "n", "df", "recipes", "seeds",
                        "images", "score", "baseline", "gain", "ci_low", "ci_high", "p_value", "p_holm", "p_floor",
                        "reachable"]
ESTIMATE = ["unit", "n", "mean", "ci_low", "ci_high", "p_value", "df"]


def ablation(con, studies: list[str], by: list[str], metric: str, n_boot: int = 1000) -> pd.DataFrame:
    """The ablation table of ``metric`` grouped by the factors ``by`` over the named studies."""
    unknown = [f for f in by if f not in FACTORS]
    if unknown:
        from mmpkd_core.registry import did_you_mean

        raise StudyError(f"unknown factor '{unknown[0]}'.{did_you_mean(unknown[0], list(FACTORS))} "
                         f"Known: {', '.join(FACTORS)}")
    pairs = load_pairs(con, studies, metric, chance=True)
    if pairs.keys.empty:
        raise StudyError(f"no completed trials with a baseline for metric '{metric}' in {', '.join(studies)}")
    return ablation_table(pairs, by, n_boot)


def recipe_gains(con, studies: list[str], metric: str | None = None, n_boot: int = 1000,
                 ready_only: bool = False, pairs: Pairs | None = None) -> pd.DataFrame:
    """Per recipe x attention method x metric: the gain over the matched baselines inferred over the
    recipe's seeds (Holm within each metric across the studies given). ``ready_only``: see ``load_pairs``.
    ``pairs``: those of ``load_pairs(..., chance=True)`` already loaded."""
    if pairs is None:
        pairs = load_pairs(con, studies, metric, chance=True, ready_only=ready_only)
    tables = []
    for m in sorted(pairs.keys["metric"].unique()):
        rows = np.flatnonzero((pairs.keys["metric"] == m).to_numpy())
        sub = pairs.take(rows)
        if (~sub.keys["method"].isin(CHANCE)).any():
            t = ablation_table(sub, RECIPE_BY, n_boot)
            t["metric"] = m
            tables.append(t)
    if not tables:
        return pd.DataFrame(columns=RECIPE_GAINS_COLUMNS)
    out = pd.concat(tables, ignore_index=True).rename(columns={"attention_method": "method"})
    out["number"] = out["number"].astype("Int64")
    return out[RECIPE_GAINS_COLUMNS]


def _units(keys: pd.DataFrame, lid: np.ndarray, gain: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Model (trial) and recipe unit gains of every level at once."""
    recipe = keys["study"].astype(str) + "#" + np.where(keys["number"].isna(), keys["trial_id"].astype(str),
                                                        keys["number"].astype(str))
    rows = pd.DataFrame({"lid": lid, "study": keys["study"].to_numpy(), "trial_id": keys["trial_id"].to_numpy(),
                         "recipe": recipe.to_numpy(), "seed": keys["seed"].to_numpy(), "gain": gain})
    models = rows.groupby(["lid", "study", "trial_id"], sort=True).agg(
        recipe=("recipe", "first"), seed=("seed", "first"), gain=("gain", "mean")).reset_index()
    recipes = (models.groupby(["lid", "recipe"], sort=True).agg(gain=("gain", "mean"), seeds=("seed", "size"))
               .reset_index())
    return models, recipes


def _level_estimates(models: pd.DataFrame, recipes: pd.DataFrame, lids) -> pd.DataFrame:
    """Per level: its unit, number of units, mean, interval, p-value and df (see the module docstring).
    Every level at once, from the unit gains sorted by level; only crossed levels (two or more recipes
    and two or more seeds) are estimated one at a time."""
    lids = np.asarray(lids)
    r_lid, m_lid = recipes["lid"].to_numpy(), models["lid"].to_numpy()  # sorted: both come from sorted groupbys
    r_gain, m_gain = recipes["gain"].to_numpy(float), models["gain"].to_numpy(float)
    r_start, r_end = np.searchsorted(r_lid, lids, "left"), np.searchsorted(r_lid, lids, "right")
    m_start, m_end = np.searchsorted(m_lid, lids, "left"), np.searchsorted(m_lid, lids, "right")
    n_r, n_m = r_end - r_start, m_end - m_start
    n_seeds = models.groupby("lid")["seed"].nunique().reindex(lids, fill_value=0).to_numpy()
    crossed = (n_r >= 2) & (n_seeds >= 2)
    by_recipes = ~crossed & (n_r >= 2)
    by_models = ~crossed & ~by_recipes & (n_m >= 2)
    unit = np.full(len(lids), UNIT_ONE_MODEL, dtype=object)
    n, mean, lo, hi, p, df = (np.ones(len(lids)), *(np.full(len(lids), np.nan) for _ in range(5)))
    for i in np.flatnonzero(crossed):  # recipes share each seed's baseline: crossed
        m = models.iloc[m_start[i]:m_end[i]]
        cells = m.pivot_table(index="recipe", columns="seed", values="gain", aggfunc="mean").to_numpy(float)
        mean[i], lo[i], hi[i], p[i], df[i] = two_way(cells)
        unit[i], n[i] = UNIT_RECIPE_X_SEED, int(np.isfinite(cells).sum())
    rows = np.flatnonzero(by_recipes | by_models)
    lists = [r_gain[r_start[i]:r_end[i]] if by_recipes[i] else m_gain[m_start[i]:m_end[i]] for i in rows]
    est = infer(lists)
    unit[rows] = np.where(by_recipes[rows], UNIT_RECIPE_ONE_SEED, UNIT_SEED)
    n[rows], mean[rows], lo[rows], hi[rows], p[rows] = (est["n"], est["mean"], est["ci_low"], est["ci_high"],
                                                         est["p_value"])
    df[rows] = est["n"] - 1
    out = pd.DataFrame({"unit": unit, "n": n, "mean": mean, "ci_low": lo, "ci_high": hi, "p_value": p, "df": df},
                       index=list(lids))
    out["n"] = out["n"].astype(object)
    return out


def ablation_table(pairs: Pairs, by: list[str], n_boot: int = 1000) -> pd.DataFrame:
    """The rows of an ablation table from per-image pairs (see the module docstring); the chance
    levels of the uniform and centre maps on the same images beside each row."""
    keys = with_bins(pairs.keys.rename(columns={"method": "attention_method"}))
    is_chance = keys["attention_method"].isin(CHANCE).to_numpy()
    live = np.flatnonzero(~is_chance)
    lk = keys.iloc[live].reset_index(drop=True)
    d, v, b = pairs.gain[live], pairs.value[live], pairs.baseline[live]
    lid = lk.groupby(by, sort=True, dropna=False).ngroup().to_numpy()
    lids, first = np.unique(lid, return_index=True)
    models, recipes = _units(lk, lid, quiet_nanmean(d, 1))
    est = _level_estimates(models, recipes, lids)
    n_recipes, n_seeds = recipes.groupby("lid").size(), models.groupby("lid")["seed"].nunique()
    one = lids[(est["unit"] == UNIT_ONE_MODEL).to_numpy()]
    if len(one):  # the methods a one-model level pools read one model: average them per image, bootstrap all at once
        rows = np.argsort(lid, kind="stable")
        rows = rows[np.isin(lid[rows], one)]
        starts = np.flatnonzero(np.r_[True, lid[rows][1:] != lid[rows][:-1]])  # one run of rows per level in one
        sorted_d = d[rows]
        ok = ~np.isnan(sorted_d)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_image = (np.add.reduceat(np.where(ok, sorted_d, 0.0), starts, axis=0)
                         / np.add.reduceat(ok, starts, axis=0)).T  # (images, levels): NaN where no row has one
        lo, hi = bootstrap_ci_columns(per_image, n_boot=n_boot)
        est.loc[one, "mean"], est.loc[one, "ci_low"], est.loc[one, "ci_high"] = quiet_nanmean(per_image, 0), lo, hi

    def level_mean(x: np.ndarray) -> np.ndarray:  # the mean of every non-NaN score of each level's rows
        ok = ~np.isnan(x)
        total = np.bincount(lid, np.where(ok, x, 0.0).sum(1), minlength=len(lids))[lids]
        count = np.bincount(lid, ok.sum(1), minlength=len(lids))[lids]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / count, np.nan)

    # each level's chance levels: the uniform and centre maps' mean score of its trials (a trial counted once)
    chance = (pd.DataFrame({"study": keys["study"].to_numpy()[is_chance], "trial_id": keys["trial_id"].to_numpy()[
        is_chance], "c": keys["attention_method"].to_numpy()[is_chance], "m": quiet_nanmean(pairs.value[is_chance], 1)})
              .pivot_table(index=["study", "trial_id"], columns="c", values="m", aggfunc="first", dropna=False))
    level_trials = pd.DataFrame({"lid": lid, "study": lk["study"].to_numpy(),
                                 "trial_id": lk["trial_id"].to_numpy()}).drop_duplicates()
    level_trials = level_trials.join(chance.reindex(columns=list(CHANCE)), on=["study", "trial_id"])
    by_level = level_trials.groupby("lid")[list(CHANCE)].mean().reindex(lids)
    out = lk.iloc[first][by].reset_index(drop=True)
    out = out.assign(unit=est["unit"].to_numpy(), n=est["n"].to_numpy(int), df=est["df"].to_numpy(float),
                     recipes=n_recipes.reindex(lids, fill_value=0).to_numpy(int),
                     seeds=n_seeds.reindex(lids, fill_value=0).to_numpy(int),
                     images=np.bincount(lid, (~np.isnan(d)).sum(1), minlength=len(lids))[lids].astype(int),
                     score=level_mean(v), baseline=level_mean(b), gain=est["mean"].to_numpy(float),
                     ci_low=est["ci_low"].to_numpy(float), ci_high=est["ci_high"].to_numpy(float),
                     p_value=est["p_value"].to_numpy(float),
                     **{f"chance_{c}": by_level[c].to_numpy(float) for c in CHANCE})
    at = out.columns.get_loc("p_value") + 1
    m = int(out["p_value"].notna().sum())
    exact = out["unit"].isin([UNIT_SEED, UNIT_RECIPE_ONE_SEED]).to_numpy()  # sign-flip p: it has a floor
    out.insert(at, "p_holm", holm(out["p_value"].to_numpy(float)))
    out.insert(at + 1, "p_floor", np.where(exact, p_floor(out["n"]), np.nan))
    out.insert(at + 2, "reachable", np.where(exact, reachable(out["n"], m, ALPHA),
                                             (out["unit"] == UNIT_RECIPE_X_SEED).to_numpy()))
    if "teacher" in by:
        out = _over_control(out, lids, models, recipes, d, lid, by, n_boot)
    return out


def control_of(teacher: str, present: set[str]) -> str | None:
    """The control a privileged teacher's gain is read against: its confidence-matched label
    smoothing if the study ran it, else plain label smoothing, else self-distillation."""
    from mmpkd_core.teachers import TEACHERS

    cls = TEACHERS.get(teacher) if teacher in TEACHERS else None
    if cls is None or cls.modality == "any" or cls.reference is not None:
        return None
    return next((c for c in (f"matched_{teacher}", "label_smoothing", "image_self") if c in present), None)


def over_control(mine: pd.DataFrame, theirs: pd.DataFrame, mine_recipes: np.ndarray, their_recipes: np.ndarray,
                 d_mine: np.ndarray, d_theirs: np.ndarray, n_boot: int) -> tuple[float, float, float, float, str]:
    """A teacher's gain minus its control's at the same other levels: paired by seed where the two
    share two or more seeds (per seed, each side's mean over its recipes), else Welch over recipes,
    else (one model a side) the image bootstrap of the difference. Returns (difference, low, high,
    p, unit)."""
    a, b = mine.groupby("seed")["gain"].mean(), theirs.groupby("seed")["gain"].mean()
    common = a.index.intersection(b.index)
    if len(common) >= 2:
        est = infer([(a.loc[common] - b.loc[common]).to_numpy()])
        return est["mean"][0], est["ci_low"][0], est["ci_high"][0], est["p_value"][0], UNIT_PAIRED_SEED
    diff = float(np.mean(mine_recipes) - np.mean(their_recipes))
    if len(mine_recipes) >= 2 and len(their_recipes) >= 2:
        lo, hi, p = welch(mine_recipes, their_recipes)
        return diff, lo, hi, p, UNIT_RECIPE_WELCH
    draws = two_level_draws(d_mine, n_boot, seed=1) - two_level_draws(d_theirs, n_boot, seed=2)
    lo, hi = percentile_interval(draws)
    return diff, lo, hi, np.nan, UNIT_ONE_MODEL


def _over_control(out: pd.DataFrame, lids, models: pd.DataFrame, recipes: pd.DataFrame, d: np.ndarray,
                  lid: np.ndarray, by: list[str], n_boot: int) -> pd.DataFrame:
    """Beside each privileged teacher's gain over the baseline: its gain over its control teacher."""
    present = set(out["teacher"])
    if not any(control_of(t, present) for t in present):
        return out  # no control teacher in these studies: no columns for it
    level_of = {tuple(r[f] for f in by): k for k, (_, r) in zip(lids, out.iterrows())}
    names = ["control", "over_control", "over_control_low", "over_control_high", "over_control_p", "over_control_unit"]
    cols = {c: [] for c in names}
    for _, row in out.iterrows():
        control = control_of(row["teacher"], present)
        theirs = tuple(control if f == "teacher" else row[f] for f in by)
        if control is None or theirs not in level_of:
            values = (control, np.nan, np.nan, np.nan, np.nan, None)
        else:
            ka, kb = level_of[tuple(row[f] for f in by)], level_of[theirs]
            values = (control, *over_control(models[models["lid"] == ka], models[models["lid"] == kb],
                                              recipes.loc[recipes["lid"] == ka, "gain"].to_numpy(),
                                              recipes.loc[recipes["lid"] == kb, "gain"].to_numpy(),
                                              d[lid == ka], d[lid == kb], n_boot))
        for c, val in zip(names, values):
            cols[c].append(val)
    at = out.columns.get_loc("ci_high") + 1
    for i, c in enumerate(names):
        out.insert(at + i, c, cols[c])
    return out


def ablation_path(con, study: str, metric: str, n_boot: int = 1000) -> pd.DataFrame:
    """An ablation study's cells in order (recipe 0 is the reference), per attention method: each
    cell's gain over the no-distillation baseline and over the reference recipe, both inferred over
    seeds (the reference difference is paired by seed and image); Holm over the cells' differences
    from the reference within the table."""
    pairs = load_pairs(con, [study], metric)
    if pairs.keys.empty:
        raise StudyError(f"no completed trials with a baseline for metric '{metric}' in {study}")
    params = {n: json.loads(p) for n, p in con.execute(
        "SELECT number, any_value(params_json) FROM trials WHERE study = ? AND NOT is_baseline GROUP BY number",
        [study]).fetchall()}
    if 0 not in params:
        raise StudyError(f"study '{study}' has no reference recipe (#0); is it an ablation study?")
    over_base = ablation_table(pairs, ["number", "attention_method"], n_boot).set_index(["number", "attention_method"])
    k = pairs.keys
    row_of = {(n, s, m): i for i, (n, s, m) in enumerate(zip(k["number"], k["seed"], k["method"]))}
    rows = []
    for (number, method), r in over_base.iterrows():
        diffs = np.array([pairs.value[i] - pairs.value[row_of[(0, s, method)]] for (n, s, m), i in row_of.items()
                          if n == number and m == method and (0, s, method) in row_of])  # (seeds, images)
        diff, lo, hi, p = 0.0, np.nan, np.nan, np.nan
        if number != 0 and len(diffs) >= 2:  # paired by seed: the seed is the unit
            est = infer([quiet_nanmean(diffs, 1)])
            diff, lo, hi, p = est["mean"][0], est["ci_low"][0], est["ci_high"][0], est["p_value"][0]
        elif number != 0 and len(diffs) == 1:  # one seed: the test images of one pair of models
            diff = float(quiet_nanmean(diffs[0]))
            lo, hi = bootstrap_ci(diffs[0], n_boot=n_boot)
        rows.append({"cell": cell_label(params[0], params.get(number, {})), "number": int(number), "method": method,
                     "gain": r["gain"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "unit": r["unit"],
                     "seeds": r["seeds"], "over_reference": diff, "over_reference_low": lo,
                     "over_reference_high": hi, "over_reference_p": p})
    out = pd.DataFrame(rows).sort_values(["method", "number"], kind="stable").reset_index(drop=True)
    out["over_reference_p_holm"] = holm(out["over_reference_p"].to_numpy(float))
    return out


def cell_label(reference: dict, cell: dict) -> str:
    """'reference', or the values a cell changes from it ('temperature=8, teacher=mlp')."""
    changed = [f"{k}={_short(v)}" for k, v in cell.items() if reference.get(k) != v]
    return ", ".join(changed) or "reference"


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
