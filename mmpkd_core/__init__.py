"""The science: data, teachers, student, losses, trainer, attention, localization.

Imports no ``study``, ``reports``, ``ray``, ``optuna`` or ``duckdb``. ``run_trial(cfg)`` is its door.
"""
from mmpkd_core.config import StudentConfig, TrialConfig
from mmpkd_core.data import DataConfig
from mmpkd_core.trial import TrialResult, baseline_config, run_recipe, run_trial

__all__ = ["DataConfig", "StudentConfig", "TrialConfig", "TrialResult", "baseline_config", "run_recipe", "run_trial"]
