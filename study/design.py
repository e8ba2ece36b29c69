"""Study designs: which recipes a study runs.

- ``optimize`` (the default): the sampler (seeded TPE) chooses each batch of recipes from the results
  so far and ASHA stops the poor ones early. It finds a good recipe; it cannot say how sensitive the
  gain is to each dimension (it samples where it did well, and most recipes are never scored).
- ``sensitivity``: 2^k recipes from a scrambled Sobol sequence over the search space (scipy's
  ``qmc.Sobol``, the generator behind Optuna's ``QMCSampler``, drawn here directly so that the first
  recipe is a Sobol point too: QMCSampler draws its first trial at random to learn the space). Each
  one-dimensional projection is stratified on the dimension's own scale (log for ``log: true``): one
  recipe per 1/2^k of its range. No pruning; every recipe is completed and scored on test.
- ``ablation``: a reference recipe, then one change at a time (or every combination of the named
  factors), each cell under every seed, none pruned.

Both fixed designs hand their recipes to the executors as enqueued trials of the same Optuna study,
so the Ray and local executors, resume and the store treat them like any other recipe.
"""
from __future__ import annotations

import itertools
import json
import math

from study.errors import SpecError
from study.spec import CategoricalDist, FloatDist, IntDist, StudySpec

MAX_CELLS = 64


# ---------------------------------------------------------------- static checks (before anything runs)

def check_design(spec: StudySpec, fits) -> None:
    """``fits(teacher, where)`` checks that a teacher reads the domain's modality."""
    if spec.design != "ablation" and spec.ablation is not None:
        raise SpecError("ablation", f"applies to design: ablation only (design is {spec.design})")
    if spec.design == "sensitivity":
        n = spec.executor.trials
        if not spec.search_space:
            raise SpecError("search_space", "a sensitivity design samples the search space; it is empty")
        if n < 2 or n & (n - 1):
            lo = 2 ** max(1, int(math.log2(max(n, 2))))
            raise SpecError("executor.trials", f"a sensitivity design needs a power of two so that every dimension "
                                               f"is stratified (got {n}); use {lo} or {2 * lo}")
    if spec.design != "ablation":
        return
    a = spec.ablation
    if a is None:
        raise SpecError("ablation", "design: ablation needs an 'ablation:' section with 'reference:' and 'factors:'")
    if not a.factors:
        raise SpecError("ablation.factors", "is empty; name at least one dimension and its levels")
    for name, levels in a.factors.items():
        where = f"ablation.factors.{name}"
        if not levels:
            raise SpecError(where, "has no levels; list at least one")
        for i, level in enumerate(levels):
            check_value(spec, name, level, f"{where}[{i}]", fits)
    if set(a.reference) == {"best_of"}:
        if not isinstance(a.reference["best_of"], str):
            raise SpecError("ablation.reference.best_of", "must name a stored study")
    else:
        for name, value in a.reference.items():
            check_value(spec, name, value, f"ablation.reference.{name}", fits)
    if a.mode == "factorial":
        cells = math.prod(len(v) for v in a.factors.values())
        if cells > MAX_CELLS:
            raise SpecError("ablation.factors", f"a factorial of {cells} cells; at most {MAX_CELLS} (fewer levels, "
                                                "or mode: one_at_a_time)")


def check_value(spec: StudySpec, name: str, value, where: str, fits) -> None:
    """One level of a dimension: a dimension the engine knows, of the right kind, inside its range."""
    from mmpkd_core.attention import METHODS
    from mmpkd_core.config import SEARCHABLE

    from study.spec import RANGES, nearest

    if name not in SEARCHABLE:
        raise SpecError(where.rsplit("[", 1)[0], f"is not a dimension{nearest(name, SEARCHABLE)}; known: "
                                                 f"{', '.join(SEARCHABLE)}")
    if name == "teacher":
        return fits(str(value), where)
    if name == "attention_method":
        if value not in METHODS:
            raise SpecError(where, f"unknown attention method '{value}'{nearest(str(value), METHODS.names())}")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(where, f"{name} takes a number (got {value!r})")
    lo, hi, inclusive = RANGES.get(name, (None, None, True))
    dim = spec.dims().get(name)
    if isinstance(dim, (FloatDist, IntDist)):
        lo, hi, inclusive = max(lo, dim.low) if lo is not None else dim.low, dim.high, True
    if (lo is not None and (value < lo if inclusive else value <= lo)) or (hi is not None and value > hi):
        bound = f"{'[' if inclusive else '('}{lo}, {hi if hi is not None else 'inf'}]"
        raise SpecError(where, f"{value} lies outside {name}'s range {bound}")


# ---------------------------------------------------------------- the recipes of a fixed design

def plan(spec: StudySpec, store) -> list[dict] | None:
    """The recipes of a sensitivity or ablation study, in order (None for an optimise study)."""
    if spec.design == "sensitivity":
        return sobol_recipes(spec)
    if spec.design == "ablation":
        return ablation_recipes(spec, reference(spec, store))
    return None


def sobol_recipes(spec: StudySpec) -> list[dict]:
    """``executor.trials`` recipes from a scrambled Sobol sequence seeded by ``executor.seed``; a
    dimension whose ``when:`` does not hold is left out of that recipe."""
    from scipy.stats import qmc

    from study.space import active, dependency_order

    dims = spec.dims()
    order = dependency_order(dims)
    points = qmc.Sobol(d=len(order), scramble=True, seed=spec.executor.seed).random(spec.executor.trials)
    recipes = []
    for u in points:
        params: dict = {}
        for j, name in enumerate(order):
            if active(dims[name], params):
                params[name] = _value(dims[name], float(u[j]))
        recipes.append(params)
    return recipes


def _value(dim, u: float):
    """The point ``u`` in [0, 1) on the dimension's own scale."""
    if isinstance(dim, CategoricalDist):
        return dim.choices[min(int(u * len(dim.choices)), len(dim.choices) - 1)]
    lo, hi = dim.low, dim.high
    if isinstance(dim, IntDist):
        steps = (hi - lo) // dim.step + 1
        if dim.log:
            return min(hi, int(round(math.exp(math.log(lo) + u * (math.log(hi + 1) - math.log(lo))) - 0.5)))
        return lo + min(int(u * steps), steps - 1) * dim.step
    x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if dim.log else lo + u * (hi - lo)
    if dim.step:
        steps = round((hi - lo) / dim.step)
        x = lo + min(int(u * (steps + 1)), steps) * dim.step
    return float(x)


def reference(spec: StudySpec, store) -> dict:
    """The reference recipe's values: the spec's, or the best completed recipe of a stored study."""
    ref = dict(spec.ablation.reference)
    if set(ref) != {"best_of"}:
        return ref
    name = ref["best_of"]
    row = store.study_row(name)
    if row is None:
        stored = [r[0] for r in store.con.execute("SELECT name FROM studies ORDER BY name").fetchall()]
        raise SpecError("ablation.reference.best_of", f"no study '{name}' in {store.path}; run it first or name one "
                                                      f"of: {', '.join(stored) or 'none'}")
    other = json.loads(row["spec_json"])
    if other.get("domain") != spec.domain:
        raise SpecError("ablation.reference.best_of", f"study '{name}' ran {other.get('domain')}, this study "
                                                      f"{spec.domain}; take the reference from the same domain")
    mode = "DESC" if other.get("objective", {}).get("mode", "max") == "max" else "ASC"
    best = store.con.execute(f"""
        SELECT any_value(params_json) FROM trials WHERE study = ? AND status = 'completed' AND NOT is_baseline
        GROUP BY number HAVING count(*) FILTER (WHERE status <> 'completed') = 0
        ORDER BY avg(val_objective) {mode} NULLS LAST, number LIMIT 1""", [name]).fetchone()
    if best is None:
        raise SpecError("ablation.reference.best_of", f"study '{name}' has no completed recipe to start from")
    return json.loads(best[0])


def ablation_recipes(spec: StudySpec, ref: dict) -> list[dict]:
    """Recipe 0 is the reference; then each factor level that differs from it (one at a time), or
    every combination of the factors' levels (factorial). Factors missing from the reference take the
    spec's own values (``recipe:`` and ``student:``)."""
    a = spec.ablation
    ref = {**{name: _spec_value(spec, name) for name in a.factors}, **ref}
    recipes = [ref]
    if a.mode == "one_at_a_time":
        changes = [{name: level} for name, levels in a.factors.items() for level in levels]
    else:
        names = list(a.factors)
        changes = [dict(zip(names, combo)) for combo in itertools.product(*(a.factors[n] for n in names))]
    for change in changes:
        cell = {**ref, **change}
        if cell not in recipes:
            recipes.append(cell)
    return recipes


def _spec_value(spec: StudySpec, name: str):
    if name in ("teacher", "attention_method"):
        value = getattr(spec.recipe, name)
        if value is None:  # the engine's default: the first teacher of the domain, the first evaluated method
            from study.trial_config import base_config

            value = getattr(base_config(spec, ""), name)
        return value
    if hasattr(spec.recipe, name):
        return getattr(spec.recipe, name)
    return getattr(spec.student, name)


def resolved(spec: StudySpec, recipes: list[dict]) -> StudySpec:
    """The spec the executors run for a fixed design: as many trials as recipes, no pruning, and (for an
    ablation) a categorical dimension per key of the recipes, so that every enqueued value is valid."""
    update = {"executor": spec.executor.model_copy(update={"trials": len(recipes), "scheduler": "fifo",
                                                           "sampler": "tpe"})}
    if spec.design == "ablation":
        keys = list(dict.fromkeys(k for r in recipes for k in r))
        update["search_space"] = {k: {"type": "categorical",
                                      "choices": list(dict.fromkeys(r[k] for r in recipes if k in r))} for k in keys}
    out = spec.model_copy(update=update)
    out._stand_in_for = spec.stand_in_for
    out._recipes = recipes
    return out
