"""Which searched dimension moves the localization gain, per domain: Optuna's fANOVA and PED-ANOVA on
the stored recipes, and a LightGBM surrogate of the gain explained by TreeSHAP (``pred_contrib``),
each with a bootstrap interval over recipes. Conditional dimensions that a recipe did not sample are
missing values (LightGBM) or absent parameters (Optuna).

Only sensitivity studies are used: their recipes are quasi-random and all completed. An optimise
study samples where it did well (so its dimensions are correlated in what it ran, and importance is
biased toward the region the sampler liked) and stops most recipes early; it is not used, and
``importance_notes`` says so. Under ``MIN_RECIPES`` completed recipes no bars are drawn."""
from __future__ import annotations

import json
import warnings

import numpy as np


def optuna_distributions(space: dict):
    import optuna.distributions as d

    out = {}
    for name, dim in space.items():
        if dim.get("type") == "categorical":
            out[name] = d.CategoricalDistribution(dim["choices"])
        elif dim.get("type") == "int":
            out[name] = d.IntDistribution(dim["low"], dim["high"], log=dim.get("log", False), step=dim.get("step") or 1)
        elif dim.get("type") == "float":
            out[name] = d.FloatDistribution(dim["low"], dim["high"], log=dim.get("log", False), step=dim.get("step"))
    return out


def _optuna_importance(rows: list[dict], dists: dict, evaluator) -> dict[str, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")
    for r in rows:
        params = {k: v for k, v in r["params"].items() if k in dists}
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=r["gain"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True))


def _shap_importance(rows: list[dict], dists: dict) -> dict[str, float]:
    import lightgbm as lgb

    names = sorted(dists)
    X = np.full((len(rows), len(names)), np.nan)
    for i, r in enumerate(rows):
        for j, n in enumerate(names):
            v = r["params"].get(n)
            if v is None:
                continue
            X[i, j] = dists[n].choices.index(v) if hasattr(dists[n], "choices") else float(v)
    cat = [j for j, n in enumerate(names) if hasattr(dists[n], "choices")]
    y = np.array([r["gain"] for r in rows])
    model = lgb.LGBMRegressor(n_estimators=100, learning_rate=0.1, num_leaves=7, min_child_samples=2,
                              min_data_in_bin=1, verbose=-1, n_jobs=1, deterministic=True, random_state=0)
    model.fit(X, y, categorical_feature=cat or "auto")
    contrib = model.predict(X, pred_contrib=True)[:, :-1]  # (trials, dims); the last column is the bias
    total = np.abs(contrib).mean(axis=0)
    s = total.sum()
    return {n: float(v / s) if s > 0 else 0.0 for n, v in zip(names, total)}


MIN_RECIPES = 16


def _designs(con, names: list[str]) -> dict[str, dict]:
    rows = con.execute("""
        SELECT s.name, s.domain, s.spec_json, count(DISTINCT t.number) FILTER (WHERE t.status = 'completed')
        FROM studies s LEFT JOIN trials t ON t.study = s.name AND NOT t.is_baseline
        WHERE list_contains(?, s.name) GROUP BY ALL ORDER BY s.name""", [names]).fetchall()
    return {n: {"domain": d, "design": json.loads(spec).get("design", "optimize"), "recipes": c}
            for n, d, spec, c in rows}


def importance_notes(con, names: list[str]) -> list[str]:
    """Why a study adds nothing to the importance panel (its design, or too few recipes)."""
    notes = []
    for name, d in _designs(con, names).items():
        if d["design"] != "sensitivity":
            notes.append(f"{name}: an {d['design']} study; importance is not estimated from "
                         + ("adaptively sampled, mostly pruned recipes" if d["design"] == "optimize" else
                            "one-change-at-a-time cells (see its ablation path)")
                         + " -- run a sensitivity study (design: sensitivity)")
        elif d["recipes"] < MIN_RECIPES:
            notes.append(f"{name}: {d['recipes']} completed recipes, too few for importance (at least {MIN_RECIPES})")
    return notes


def importance_rows(con, names: list[str], metric: str, n_boot: int = 20) -> list[dict]:
    """Rows {domain, method, dimension, importance, low, high}: importances (normalised to sum 1)
    of each searched dimension for the gain of the trial's sampled method in ``metric``, from the
    sensitivity studies among ``names`` with at least ``MIN_RECIPES`` completed recipes."""
    designs = _designs(con, names)
    names = [n for n, d in designs.items() if d["design"] == "sensitivity" and d["recipes"] >= MIN_RECIPES]
    if not names:
        return []
    specs = {n: json.loads(s) for n, s in con.execute(
        "SELECT name, spec_json FROM studies WHERE list_contains(?, name)", [names]).fetchall()}
    trials = con.execute("""
        SELECT t.study, t.domain, t.params_json, avg(g.gain) FROM trials t
        JOIN gains g ON g.study = t.study AND g.trial_id = t.trial_id AND g.method = t.attention_method AND g.metric = ?
        WHERE list_contains(?, t.study) AND t.status = 'completed' AND NOT t.is_baseline
        GROUP BY t.study, t.domain, t.number, t.params_json""", [metric, names]).fetchall()
    by_domain: dict[str, list[dict]] = {}
    dists: dict[str, dict] = {}
    for study, domain, params, gain in trials:
        if gain is None or not np.isfinite(gain):
            continue
        by_domain.setdefault(domain, []).append({"params": json.loads(params), "gain": float(gain)})
        dists.setdefault(domain, {}).update(optuna_distributions(specs[study].get("search_space", {})))
    out = []
    for domain, rows in sorted(by_domain.items()):
        d = {k: v for k, v in dists[domain].items() if any(k in r["params"] for r in rows)}
        if len(rows) < 3 or not d:
            continue
        out += [{"domain": domain, **r} for r in importance_table(rows, d, n_boot)]
    return out


def importance_table(rows: list[dict], dists: dict, n_boot: int = 20, methods=None, seed: int = 0) -> list[dict]:
    """Rows {method, dimension, importance, low, high, trials} for recipes ``rows`` ({params, gain}):
    each method's importances (normalised to sum 1) with a 95% bootstrap interval over the recipes."""
    import optuna

    evaluators = {"fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
                  "PED-ANOVA": lambda: optuna.importance.PedAnovaImportanceEvaluator(),
                  "LightGBM TreeSHAP": None}
    out = []
    rng = np.random.default_rng(seed)
    for method, make in evaluators.items():
        if methods is not None and method not in methods:
            continue

        def once(sample):
            if make is None:
                return _shap_importance(sample, dists)
            return _optuna_importance(sample, dists, make())
        try:
            point = once(rows)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        boots = []
        for _ in range(n_boot):
            sample = [rows[i] for i in rng.integers(0, len(rows), len(rows))]
            try:
                boots.append(once(sample))
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
        for dim in sorted(dists):
            vals = [b.get(dim, 0.0) for b in boots]
            out.append({"method": method, "dimension": dim, "importance": point.get(dim, 0.0),
                        "low": float(np.quantile(vals, 0.025)) if vals else None,
                        "high": float(np.quantile(vals, 0.975)) if vals else None, "trials": len(rows)})
    return out
