"""The shared cache folder of prepared data, fitted teachers and downloaded-once artefacts: where it
is, and how files in it are written and stamped. Imports nothing of the engine (a leaf)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

CACHE_DIR = ".mmpkd_cache"  # the default, relative to the working directory
CACHE_ENV = "MMPKD_CACHE"  # the environment variable that moves it


def default_cache_dir() -> Path:
    """``$MMPKD_CACHE``, else ``.mmpkd_cache`` (what ``--cache-dir`` defaults to)."""
    return Path(os.environ.get(CACHE_ENV) or CACHE_DIR)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix + ".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cache_version(marker: Path):
    """The science version a cache's marker file records (None: no marker, made before versions were)."""
    try:
        return json.loads(marker.read_text()).get("science_version")
    except (OSError, ValueError):
        return None
