"""A known answer for the study designs: a stand-in trainer whose response is planted.

The stand-in replaces training by a formula, so that a design can be judged against the truth in
seconds. Over five recipe dimensions only two move the "gain":

    gain = 0.08 * log2(temperature) / 3 + 0.06 * (1 - 4 * (alpha - 0.5)^2) + noise (sd 0.01, the seed)

beta, lr and weight_decay do nothing. Under sampling on each dimension's own scale the true variance
shares are about 0.54 (temperature) and 0.46 (alpha), 0 for the rest. ``compare`` spends the same
budget on each design -- the sensitivity design's scrambled Sobol recipes, and the optimise design's
seeded TPE maximising the gain (the engine's own sampler) -- and estimates importance from each with
the report's fANOVA (``reports.importance.importance_table``), replicated over independent studies so
that the interval is over studies, not over one study's recipes.
"""
from __future__ import annotations

import math

import numpy as np

SPACE = {"temperature": {"type": "float", "low": 1.0, "high": 8.0, "log": True},
         "alpha": {"type": "float", "low": 0.05, "high": 1.0},
         "beta": {"type": "float", "low": 0.0, "high": 1.0},
         "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "weight_decay": {"type": "float", "low": 0.0, "high": 0.1}}
MATTER = ("temperature", "alpha")
NOISE = 0.01


def response(params: dict, rng) -> float:
    return (0.08 * math.log2(params["temperature"]) / 3 + 0.06 * (1 - 4 * (params["alpha"] - 0.5) ** 2)
            + rng.normal(0, NOISE))


def spec(design: str, budget: int, seed: int):
    from study.load import spec_from_dict

    return spec_from_dict({"name": f"known-{design}", "domain": "synthetic_ddsm", "design": design,
                           "search_space": SPACE, "executor": {"trials": budget, "seed": seed}})


def recipes(design: str, budget: int = 32, seed: int = 0) -> list[dict]:
    """``budget`` recipes of the design with their stand-in gains."""
    import optuna

    from study.design import sobol_recipes
    from study.sampling import sampler
    from study.space import suggest

    rng = np.random.default_rng(seed)
    s = spec(design, budget, seed)
    if design == "sensitivity":
        return [{"params": p, "gain": response(p, rng)} for p in sobol_recipes(s)]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=sampler(s))
    out = []
    for _ in range(budget):
        trial = study.ask()
        p = suggest(trial, s.dims())
        out.append({"params": p, "gain": response(p, rng)})
        study.tell(trial, out[-1]["gain"])
    return out


def compare(budget: int = 64, replicates: int = 5, seed: int = 0) -> dict[str, list[dict]]:
    """Per design: fANOVA importance of each dimension, as the mean over ``replicates`` independent
    studies of ``budget`` recipes (each its own design seed and noise) with a t-interval over them."""
    from reports.importance import optuna_distributions, importance_table
    from study.inference import infer

    dists = optuna_distributions(SPACE)
    out = {}
    for design in ("sensitivity", "optimize"):
        runs = [{r["dimension"]: r["importance"] for r in
                 importance_table(recipes(design, budget, seed + k), dists, n_boot=0, methods=("fANOVA",))}
                for k in range(replicates)]
        est = infer([np.array([run[d] for run in runs]) for d in SPACE])
        out[design] = [{"dimension": d, "importance": est["mean"][i], "low": est["ci_low"][i],
                        "high": est["ci_high"][i], "replicates": replicates} for i, d in enumerate(SPACE)]
    return out


def true_shares(n: int = 200_000, seed: int = 0) -> dict[str, float]:
    """Variance share of each dimension's term under sampling on its own scale (Monte Carlo)."""
    rng = np.random.default_rng(seed)
    t = 0.08 * rng.uniform(0, 3, n) / 3
    a = rng.uniform(0.05, 1.0, n)
    parts = {"temperature": t.var(), "alpha": (0.06 * (1 - 4 * (a - 0.5) ** 2)).var()}
    total = sum(parts.values())
    return {k: float(parts.get(k, 0.0) / total) for k in SPACE}
