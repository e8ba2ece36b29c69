"""Known-answer validation: a planted effect the engine must find, and a null it must not.

Both studies (search_spaces/validation/) distil the report teacher and its matched control (label
smoothing as confident as the teacher, image by image: ``matched_bert_scratch``) into the same
student under the same recipe and seeds. The contrast is privileged minus control,
paired by seed and test image, inferred over seeds (``study.inference``: per seed, the mean over
test images of the difference; a t-interval on seeds - 1 df and an exact sign-flip p-value).
Expectations: planted (40% wrong labels, the report knows the truth) -> the interval lies above
zero; null (clean labels) -> the interval covers zero.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from study.errors import StudyError
from study.inference import UNIT_PAIRED_SEED, infer
from study.load import spec_from_dict
from study.stats import PairingError

SPECS = Path(__file__).resolve().parent.parent / "search_spaces" / "validation"
PRIVILEGED, CONTROL = "bert_scratch", "matched_bert_scratch"
QUICK = {"data": {"n_train": 1000, "n_val": 100, "n_test": 100}, "student": {"epochs": 10}, "seeds": [0, 1]}


REPEAT_SEEDS = [0, 1, 2, 3, 4, 5]  # a repeated null trains 6 seeds: privileged vs control, and seeds 0-2 vs 3-5
# a repeat scores more methods x metrics (cheap next to training): 9 A/A intervals per family of models
REPEAT_EVALUATION = {"methods": ["raw_cls", "rollout", "grad_rollout"],
                     "metrics": ["pointing_game", "relevance_mass", "pixel_auroc"]}


def load(kind: str, quick: bool = False, data_seed: int | None = None, name: str | None = None,
         seeds: list[int] | None = None, evaluation: dict | None = None):
    raw = yaml.safe_load((SPECS / f"{kind}.yaml").read_text())
    if quick:
        for k, v in QUICK.items():
            raw[k] = {**raw[k], **v} if isinstance(v, dict) else v
        raw["name"] += "-quick"
    if data_seed is not None:
        raw["data"] = {**raw["data"], "seed": data_seed}
    if name:
        raw["name"] = name
    if seeds:
        raw["seeds"] = seeds
    if evaluation:
        raw["evaluation"] = evaluation
    return spec_from_dict(raw)


def seed_split_contrast(con, study: str, models: str = "privileged") -> pd.DataFrame:
    """An A/A check of the interval: one recipe's models of the first half of the seeds minus those
    of the second half (seed k against seed k + half), paired by image -- the privileged teacher's
    students (``models="privileged"``), or the study's own no-distillation baselines
    (``"baseline"``). Nothing differs but the seed, so a calibrated 95% interval excludes zero 5% of
    the time."""
    who = "NOT t.is_baseline AND t.teacher = ?" if models == "privileged" else "t.is_baseline AND ? IS NOT NULL"
    rows = con.execute(f"""
        SELECT t.seed, l.method, l.metric, l.image_id, l.value
        FROM localization l JOIN trials t ON t.study = l.study AND t.trial_id = l.trial_id
        WHERE t.study = ? AND t.status = 'completed' AND {who} AND l.method NOT IN ('uniform', 'centre')
        ORDER BY l.method, l.metric, t.seed, l.image_id""", [study, PRIVILEGED]).df()
    out = []
    for (method, metric), g in rows.groupby(["method", "metric"], sort=True):
        v = g.pivot(index="seed", columns="image_id", values="value").sort_index()
        half = len(v) // 2
        if half == 0:
            raise StudyError(f"study '{study}' has fewer than two seeds of "
                             f"{PRIVILEGED if models == 'privileged' else 'its baseline'}")
        diff = v.iloc[:half].to_numpy(float) - v.iloc[half:2 * half].to_numpy(float)
        out.append({"study": study, "method": method, "metric": metric, "seeds": 2 * half, "images": diff.shape[1],
                    "privileged_minus_control": float(np.nanmean(diff)), **seed_interval(diff)})
    return pd.DataFrame(out)


def seed_interval(diff: np.ndarray) -> dict:
    """The seed-level interval and sign-flip p of a (seeds x images) matrix of paired differences."""
    with np.errstate(invalid="ignore"):
        units = np.nanmean(diff, axis=1)
    est = infer([units[~np.isnan(units)]])
    return {"ci_low": est["ci_low"][0], "ci_high": est["ci_high"][0], "p_value": est["p_value"][0],
            "unit": UNIT_PAIRED_SEED}


def contrast(con, study: str) -> pd.DataFrame:
    """Per method x metric: privileged minus control, paired by seed and image, with the interval;
    and each teacher's mean gain over the matched no-distillation baseline."""
    rows = con.execute("""
        SELECT t.teacher, t.seed, l.method, l.metric, l.image_id, l.value
        FROM localization l JOIN trials t ON t.study = l.study AND t.trial_id = l.trial_id
        WHERE t.study = ? AND t.status = 'completed' AND NOT t.is_baseline AND l.method NOT IN ('uniform', 'centre')
        ORDER BY l.method, l.metric, t.seed, l.image_id""", [study]).df()
    gains = con.execute("SELECT teacher, method, metric, avg(gain) FROM gains WHERE study = ? GROUP BY ALL",
                        [study]).fetchall()
    gain = {(t, m, k): g for t, m, k, g in gains}
    out = []
    for (method, metric), g in rows.groupby(["method", "metric"], sort=True):
        p = g[g.teacher == PRIVILEGED].set_index(["seed", "image_id"])["value"]
        c = g[g.teacher == CONTROL].set_index(["seed", "image_id"])["value"]
        if p.empty or c.empty:
            raise StudyError(f"study '{study}' has no completed {PRIVILEGED} or {CONTROL} trials")
        if set(p.index) != set(c.index):
            raise PairingError(f"{study}: {method}/{metric}: the two teachers' students were scored on different "
                               "seeds or images")
        diff = (p - c.loc[p.index]).unstack("image_id")  # (seeds, images)
        out.append({"study": study, "method": method, "metric": metric, "seeds": len(diff),
                    "images": diff.shape[1], "privileged_minus_control": float(np.nanmean(diff.to_numpy())),
                    **seed_interval(diff.to_numpy(float)), "privileged_gain": gain.get((PRIVILEGED, method, metric)),
                    "control_gain": gain.get((CONTROL, method, metric))})
    return pd.DataFrame(out)


def verdict(expectation: str, lo: float, hi: float) -> str:
    if expectation == "planted":
        return "found" if lo > 0 else "NOT FOUND"
    return "no effect (as expected)" if lo <= 0 <= hi else "FALSE POSITIVE"
