"""The prepared cache of a real data set: decode and resize every image once, then memory-map.

``study data prepare DOMAIN --root PATH`` (or the first study on that data) reads the data set's
tables, decodes each image (DICOM through pydicom, PNG/JPEG through Pillow), pads it to a square,
resizes it to ``image_size`` and writes, under ``<cache>/prepared/<domain>-<key>/``:

- ``images.npy``: (N, 1, S, S) uint8, read a batch at a time by every trial and Ray worker
  (``mmpkd_core.data.stream``);
- ``masks.npy``: (N, S, S) bool ROI (all False for images without a lesion outline or box);
- ``meta.parquet``: one row per image with the data set's own columns (labels, metadata, report);
- ``prepared.json``: counts, settings, seconds, and the inputs skipped under ``--skip-bad``.

The key hashes the domain, the resolved root, the data set's tables (file contents), the image size,
``skip_bad`` and the preparation code's version -- not the label policy or privileged columns, which
are applied when a trial loads the cache, so changing them never decodes an image again. Image files
are taken as immutable: a changed image under an unchanged table needs ``--force``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from mmpkd_core.cache import atomic_write, cache_root, cache_version
from mmpkd_core.version import SCIENCE_VERSION, describe, stamp

PREP_VERSION = 1
PREPARE_COUNT = {"prepared": 0}  # real data sets actually decoded in this process (the cache makes the rest free)


class DataError(ValueError):
    """Bad input in a real data set; ``str()`` is one line naming the file or column and a count."""


@dataclass
class Item:
    """One image to prepare: where it is, and where its ROI comes from."""

    image_id: str
    path: Path
    mask_paths: list[Path] = field(default_factory=list)  # ROI masks, same size as the image (unioned)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x, y, w, h in source pixels
    box_size: tuple[int, int] | None = None  # (width, height) the boxes refer to; None: the image's own


def data_root(cfg, domain: str, what: str) -> Path:
    """``cfg.root`` resolved, or one line saying what the domain needs there."""
    if not cfg.root:
        raise DataError(f"{domain} needs data.root (or --root): {what}")
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder")
    return root


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tables_digest(paths: list[Path]) -> str:
    """A digest of the data set's tables (contents; memoised by size and mtime within a process)."""
    parts = []
    for p in sorted(paths):
        st = p.stat()
        parts.append(f"{p.name}:{_file_digest(str(p), st.st_size, st.st_mtime_ns)}")
    return "|".join(parts)


def prepared_path(domain, cfg, cache_dir=None) -> Path:
    """Where ``domain``'s (a real ``Domain``) prepared cache for ``cfg`` is."""
    digest = domain.fingerprint(cfg)  # reads the tables: stops first on a missing root or table
    blob = json.dumps({"domain": domain.name, "root": str(Path(cfg.root).expanduser().resolve()),
                       "size": cfg.image_size, "skip_bad": cfg.skip_bad, "tables": digest, "version": PREP_VERSION})
    return cache_root(cache_dir) / "prepared" / f"{domain.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def ensure_prepared(domain, cfg, cache_dir=None, workers: int | None = None, force: bool = False, say=print) -> Path:
    """The prepared cache's folder, decoding the data set into it first if absent (or ``force``)."""
    folder = prepared_path(domain, cfg, cache_dir)
    made_by = cache_version(folder / "prepared.json")
    if not force and (folder / "prepared.json").exists() and made_by != SCIENCE_VERSION:
        say(f"prepared cache {folder.name} made by {describe(made_by)}; this engine is science version "
            f"{SCIENCE_VERSION}: preparing it again")
        force = True
    if force or not (folder / "prepared.json").exists():
        items, meta, skipped = domain.plan(cfg)
        say(f"preparing {domain.name}: {len(items)} images from {Path(cfg.root).expanduser().resolve()} at "
            f"{cfg.image_size}x{cfg.image_size}")
        build(folder, items, meta, cfg.image_size, cfg.skip_bad, workers or default_workers(), say, skipped)
    return folder


# ------------------------------------------------------------------ decoding

def read_image(path: Path) -> np.ndarray:
    """A 2-D float32 image in [0, 1]: DICOM (modality LUT applied, MONOCHROME1 inverted) or PNG/JPEG."""
    if path.suffix.lower() in (".dcm", ".dicom", ""):
        import pydicom
        from pydicom.pixels import apply_modality_lut

        ds = pydicom.dcmread(path)
        arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
            arr = arr.max() - arr
    else:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("L") if im.mode in ("RGB", "RGBA", "P", "LA") else im, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected one grey-level frame, got shape {arr.shape}")
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def to_square(arr: np.ndarray, size: int) -> np.ndarray:
    """Pad to a square at the bottom/right (keeping the aspect ratio), then area-resize to ``size``."""
    from PIL import Image

    h, w = arr.shape
    side = max(h, w)
    sq = np.zeros((side, side), dtype=np.float32)
    sq[:h, :w] = arr
    return np.asarray(Image.fromarray(sq, mode="F").resize((size, size), Image.Resampling.BOX), dtype=np.float32)


def prepare_one(item: Item, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 (S, S), mask bool (S, S))``; raises ``ValueError`` naming what is wrong."""
    try:
        img = read_image(item.path)
    except Exception as err:  # pydicom and Pillow raise many types for a bad file
        raise ValueError(f"unreadable image {item.path}: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}")
    roi = np.zeros(img.shape, dtype=np.float32)
    for mp in item.mask_paths:
        try:
            m = read_image(mp)
        except Exception as err:
            raise ValueError(f"unreadable ROI mask {mp}: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}")
        if m.shape != img.shape:
            raise ValueError(f"ROI mask {mp} is {m.shape[1]}x{m.shape[0]} but its image {item.path} is "
                             f"{img.shape[1]}x{img.shape[0]}")
        roi = np.maximum(roi, (m > 0.5).astype(np.float32))
    if item.boxes:
        bw, bh = item.box_size or (img.shape[1], img.shape[0])
        sx, sy = img.shape[1] / bw, img.shape[0] / bh
        for x, y, w, h in item.boxes:
            x0, y0 = max(int(np.floor(x * sx)), 0), max(int(np.floor(y * sy)), 0)
            roi[y0:int(np.ceil((y + h) * sy)), x0:int(np.ceil((x + w) * sx))] = 1.0
    image = np.clip(np.rint(to_square(img, size) * 255), 0, 255).astype(np.uint8)
    mask = to_square(roi, size) > 0  # any coverage: a small lesion keeps at least one pixel
    return image, mask


def _work(args):
    item, size = args
    try:
        return prepare_one(item, size), None
    except ValueError as err:
        return None, str(err)


# ------------------------------------------------------------------ the cache

def build(folder: Path, items: list[Item], meta: pd.DataFrame, size: int, skip_bad: bool, workers: int,
          say=print, skipped: list[tuple[str, str]] = ()) -> dict:
    """Decode ``items`` (in ``meta``'s row order) into ``folder``; stop on bad input with a count and
    the first case, unless ``skip_bad`` (then the skipped inputs -- with ``skipped``, those the caller
    dropped already -- are listed in ``skipped.csv``). Images stream into memory-mapped files, so a
    data set larger than memory prepares in constant memory; nothing is left behind on failure."""
    t0 = time.perf_counter()
    n = len(items)
    folder.mkdir(parents=True, exist_ok=True)
    parts = {name: folder / f"{name}.partial" for name in ("images.npy", "masks.npy")}
    try:
        images = np.lib.format.open_memmap(parts["images.npy"], mode="w+", dtype=np.uint8, shape=(n, 1, size, size))
        masks = np.lib.format.open_memmap(parts["masks.npy"], mode="w+", dtype=bool, shape=(n, size, size))
        errors: list[tuple[str, str]] = []
        keep = np.ones(n, dtype=bool)
        jobs = ((it, size) for it in items)
        with ProcessPoolExecutor(max_workers=workers) if workers > 1 and n > 1 else _Inline() as pool:
            for i, (out, err) in enumerate(pool.map(_work, jobs, chunksize=max(1, min(64, n // (workers * 8) or 1)))):
                if err is not None:
                    errors.append((items[i].image_id, err))
                    keep[i] = False
                else:
                    images[i, 0], masks[i] = out
        if errors and not skip_bad:
            raise DataError(f"{len(errors)} of {n} images could not be prepared; first: {errors[0][1]}. Fix the files "
                            "or pass --skip-bad to skip them (they are listed in the prepared cache)")
        if not keep.all():  # drop the skipped rows, a block at a time
            kept = np.flatnonzero(keep)
            for name, arr in (("images.npy", images), ("masks.npy", masks)):
                out = np.lib.format.open_memmap(folder / f"{name}.kept", mode="w+", dtype=arr.dtype,
                                                shape=(len(kept), *arr.shape[1:]))
                for start in range(0, len(kept), 1024):
                    out[start:start + 1024] = arr[kept[start:start + 1024]]
                out.flush()
                del out
                os.replace(folder / f"{name}.kept", parts[name])
        images.flush()
        masks.flush()
        del images, masks
    except BaseException:
        for p in [*parts.values(), *(folder / f"{k}.kept" for k in parts)]:
            p.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
        raise
    errors = list(skipped) + errors
    seconds = time.perf_counter() - t0
    meta = meta.reset_index(drop=True)[keep].reset_index(drop=True)
    info = {"images": int(keep.sum()), "skipped": len(errors), "image_size": size, "seconds": round(seconds, 2),
            "images_per_second": round(n / seconds, 1) if seconds > 0 else None, "workers": workers, **stamp()}
    for name, part in parts.items():
        os.replace(part, folder / name)
    atomic_write(folder / "meta.parquet", lambda p: meta.to_parquet(p, index=False))
    if errors:
        atomic_write(folder / "skipped.csv",
                     lambda p: pd.DataFrame(errors, columns=["image_id", "problem"]).to_csv(p, index=False))
        say(f"skipped {len(errors)} bad input(s), listed in {folder / 'skipped.csv'}")
    # last: marks it complete
    atomic_write(folder / "prepared.json", lambda p: p.write_text(json.dumps(info, indent=1)))
    PREPARE_COUNT["prepared"] += 1
    return info


class _Inline:
    """``ProcessPoolExecutor``'s ``map`` in this process (one worker)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, iterable, chunksize=1):
        return map(fn, iterable)


def open_prepared(folder: Path):
    """``(images, masks, meta)`` of a complete prepared cache: images (uint8) and masks as
    ``mmpkd_core.data.stream.Rows``, read from disk a batch at a time."""
    from mmpkd_core.data.stream import open_rows

    return open_rows(folder / "images.npy"), open_rows(folder / "masks.npy"), pd.read_parquet(folder / "meta.parquet")


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))
