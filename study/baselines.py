"""The matched no-distillation baselines a study needs: which are stored already (by any study in this
database, made by this science version), which are queued to run, which a finished sweep still lacks."""
from __future__ import annotations

import json

from study.store import Store


class BaselineQueue:
    """The matched baselines still to run: the spec's own, then one for each recipe whose student or
    schedule has no stored (or queued) baseline yet (``for_recipe``)."""

    def __init__(self, base, seeds: list[int], todo: list, stored: set[str] = frozenset()):
        self.base, self.seeds, self.todo = base, seeds, list(todo)
        self.known: set[str] = {c.config_hash() for c in todo} | set(stored)  # queued, or stored by this engine

    def for_recipe(self, params: dict) -> None:
        from mmpkd_core import baseline_config

        for seed in ([params["seed"]] if "seed" in params else self.seeds):
            b = baseline_config(self.base.with_params({**params, "seed": seed}))
            h = b.config_hash()
            if h not in self.known:
                self.known.add(h)
                self.todo.append(b)


def baselines_to_run(configs: list, store: Store, say) -> list:
    """The baselines among ``configs`` not yet stored by this science version (by any study in this
    database), each said once."""
    from mmpkd_core.version import SCIENCE_VERSION, describe

    done = store.completed_baselines(SCIENCE_VERSION)
    todo = [c for c in {c.config_hash(): c for c in configs}.values()
            if SCIENCE_VERSION not in done.get(c.config_hash(), ())]
    for c in todo:
        for v in sorted(done.get(c.config_hash(), ()), key=str):
            say(f"baseline for seed {c.seed} made by {describe(v)}; this engine is science version "
                f"{SCIENCE_VERSION}: running it again")
    if configs:
        say(f"baselines: running {len(todo)} (reused: {len(configs) - len(todo)})" if todo else
            f"baselines: {len(configs)} reused from the database")
    return todo


def missing_baselines(store: Store, study: str) -> list:
    """The baselines of the study's stored recipes that no completed baseline of their science version
    matches (one failed, or a recipe sampled a student or schedule of its own)."""
    from mmpkd_core import TrialConfig, baseline_config

    rows = store.con.execute("""
        SELECT DISTINCT t.config_json FROM trials t
        WHERE t.study = ? AND NOT t.is_baseline AND NOT EXISTS
              (SELECT 1 FROM trials b WHERE b.is_baseline AND b.status = 'completed' AND b.config_hash = t.baseline_key
               AND b.science_version IS NOT DISTINCT FROM t.science_version)""", [study]).fetchall()
    configs = {}
    for (cfg_json,) in rows:
        b = baseline_config(TrialConfig.from_dict(json.loads(cfg_json)))
        configs[b.config_hash()] = b
    return list(configs.values())
