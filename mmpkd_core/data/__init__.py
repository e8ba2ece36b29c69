"""Domains: built-in synthetic ones; each module registers itself in ``DOMAINS``."""
from mmpkd_core.data import cbis_ddsm, mimic_cxr, synthetic_cxr, synthetic_ddsm  # noqa: F401  (fill the registry)
from mmpkd_core.data.base import DOMAINS, DataConfig, DomainData, SPLITS, load_domain

__all__ = ["DOMAINS", "DataConfig", "DomainData", "SPLITS", "load_domain"]
