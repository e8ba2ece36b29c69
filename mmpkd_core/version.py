"""The science version: an integer that changes whenever what a trial computes changes -- data
preparation, standardisation, training, teachers, attention methods, metrics, evaluation.

Numbers made by different science versions are never paired or reused: a baseline, a teacher's
cached outputs or a prepared data cache of another version is made again (and the engine says so in
one line), and a study is resumed only by an engine of the version that made it. The package version
(``ENGINE_VERSION``) is recorded beside it; a change of package version alone changes nothing.

Bump ``SCIENCE_VERSION`` in the same change that alters what a trial computes, and regenerate the
golden trial (``tests/fixtures/golden_trial.json``) with:

    .venv/bin/python tests/golden_trial.py --write
"""
from __future__ import annotations

import sys

SCIENCE_VERSION = 2


def engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmpkd-study")
    except PackageNotFoundError:
        return "unknown"


def stamp() -> dict:
    """What a cache or a result records about the engine that made it."""
    return {"science_version": SCIENCE_VERSION, "engine_version": engine_version()}


def notify(message: str) -> None:
    """One line for the user: a cache of another science version is being made again."""
    print(message, file=sys.stderr, flush=True)


def describe(version) -> str:
    return "an engine from before science versions were recorded" if version is None else f"science version {version}"
