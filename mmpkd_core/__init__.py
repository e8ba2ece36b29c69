"""The science: data, teachers, student, losses, trainer, attention, localization.

Imports no ``study``, ``reports``, ``ray``, ``optuna`` or ``duckdb``. ``run_trial(cfg)`` is its door.
The names below are loaded on first use, so that a light submodule (``mmpkd_core.version``,
``mmpkd_core.registry``) can be imported without torch: the CLI's read commands rely on it.
"""
from __future__ import annotations

import importlib

_WHERE = {"StudentConfig": "mmpkd_core.config", "TrialConfig": "mmpkd_core.config", "DataConfig": "mmpkd_core.data",
          "TrialResult": "mmpkd_core.trial", "baseline_config": "mmpkd_core.trial", "run_recipe": "mmpkd_core.trial",
          "run_trial": "mmpkd_core.trial"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'mmpkd_core' has no attribute '{name}'")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
