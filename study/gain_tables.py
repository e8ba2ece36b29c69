"""The stored gains: the per-model ``gains`` table and the per-recipe ``recipe_gains`` table, written
together from one load of each metric's per-image pairs (``study.gains`` for the one, ``study.ablation``
for the other)."""
from __future__ import annotations

import pandas as pd

from study.ablation import RECIPE_GAINS_COLUMNS, recipe_gains
from study.gains import GAINS_COLUMNS, load_pairs, trial_gains


def refresh_gains(store, study: str, n_boot: int = 1000, ready_only: bool = False) -> int:
    """Recompute the study's rows of the ``gains`` table (per trained model) and of ``recipe_gains``
    (per recipe, inferred over its seeds), in one transaction; returns the ``gains`` row count.
    ``ready_only``: while the study runs, the trials whose baseline has finished. One metric at a time,
    each metric's pairs loaded once for both tables (Holm's corrections are within a metric)."""
    metrics = [m for (m,) in store.con.execute("SELECT DISTINCT metric FROM evaluation WHERE study = ? ORDER BY 1",
                                               [study]).fetchall()]
    per_model, per_recipe = [], []
    for metric in metrics:
        pairs = load_pairs(store.con, [study], metric, chance=True, ready_only=ready_only)
        g = trial_gains(store.con, [study], n_boot=n_boot, pairs=pairs)
        if len(g):
            per_model.append(g[GAINS_COLUMNS])
            per_recipe.append(recipe_gains(store.con, [study], n_boot=n_boot, pairs=pairs))
    g = (pd.concat(per_model, ignore_index=True).sort_values(["study", "trial_id", "method", "metric"], kind="stable")
         if per_model else pd.DataFrame(columns=GAINS_COLUMNS))
    r = pd.concat(per_recipe, ignore_index=True) if per_recipe else pd.DataFrame(columns=RECIPE_GAINS_COLUMNS)
    with store.transaction():
        store.con.execute("DELETE FROM gains WHERE study = ?", [study])
        store.con.execute("DELETE FROM recipe_gains WHERE study = ?", [study])
        if len(g):
            store.con.execute("INSERT INTO gains SELECT * FROM g")
        if len(r):
            store.con.execute("INSERT INTO recipe_gains SELECT * FROM r")
    store.changed()
    return len(g)
