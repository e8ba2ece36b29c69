"""A MIMIC-CXR-sized stand-in written straight into the prepared cache's layout.

Measuring memory and throughput at the real data set's scale (hundreds of thousands of images at
224 px) needs a prepared cache of that size, not the JPEGs behind it: ``write_mimic_like`` writes the
tables ``mimic_cxr`` keys its cache on (metadata, split, CheXpert, NegBio, MS-CXR) under ``root`` and
the prepared cache itself (``images.npy``, ``masks.npy``, ``meta.parquet``, ``prepared.json``) where
``mimic_cxr`` looks for it, a chunk at a time, so that writing it takes constant memory. A trial then
reads it exactly as it reads a prepared MIMIC-CXR-JPG.

Each subject has two images (one study each); half the images hold a bright disc (the finding) on
noise; the evaluation subjects' positive images carry an MS-CXR box around the disc.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mmpkd_core.cache import atomic_write
from mmpkd_core.data.base import DOMAINS, DataConfig
from mmpkd_core.data.prepared import prepared_path
from mmpkd_core.version import stamp

CHUNK = 512


def _tables(root: Path, meta: pd.DataFrame) -> None:
    root.mkdir(parents=True, exist_ok=True)
    m = meta.rename(columns={"image_id": "dicom_id"})
    m[["dicom_id", "subject_id", "study_id", "ViewPosition"]].to_csv(root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    m[["dicom_id", "study_id", "subject_id", "split"]].to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)
    for name in ("chexpert", "negbio"):
        m[["subject_id", "study_id", f"{name}:Pneumonia"]].rename(columns={f"{name}:Pneumonia": "Pneumonia"}).to_csv(
            root / f"mimic-cxr-2.0.0-{name}.csv", index=False)


def write_mimic_like(root: str | Path, cache_dir: str | Path, n: int, image_size: int = 224, n_eval: int = 400,
                     seed: int = 0) -> DataConfig:
    """Write ``n`` images (``n_eval`` of them validation and test, by subject) and return the
    ``DataConfig`` that opens them as ``mimic_cxr``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    S = image_size
    subjects = np.repeat(np.arange(n // 2 + 1), 2)[:n] + 10000000
    n_train_subjects = (n - n_eval) // 2
    split = np.where(subjects - 10000000 < n_train_subjects, "train",
                     np.where((subjects - 10000000 - n_train_subjects) % 2 == 0, "validate", "test"))
    label = (rng.random(n) < 0.5).astype(int)
    boxed = (label == 1) & (split != "train")
    r = max(2, S // 16)
    cy, cx = rng.integers(r, S - r, n), rng.integers(r, S - r, n)
    ids = [f"{i:08x}-0000-0000-0000-000000000000" for i in range(n)]
    meta = pd.DataFrame({
        "image_id": ids, "subject_id": subjects.astype(str), "study_id": (50000000 + np.arange(n)).astype(str),
        "ViewPosition": np.where(np.arange(n) % 2 == 0, "PA", "AP"), "split": split,
        "chexpert:Pneumonia": np.where(label == 1, "1.0", "0.0"),
        "negbio:Pneumonia": np.where(label == 1, "1.0", "0.0"),
        "report": np.where(label == 1,
                           "FINDINGS: Focal consolidation, consistent with pneumonia. IMPRESSION: Pneumonia.",
                           "FINDINGS: The lungs are clear. IMPRESSION: No acute cardiopulmonary process."),
        "ms_cxr_categories": np.where(boxed, "Pneumonia", ""),
    })
    _tables(root, meta)
    with open(root / "MS_CXR_Local_Alignment_v1.1.0.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dicom_id", "category_name", "x", "y", "w", "h", "image_width", "image_height"])
        w.writerows([ids[i], "Pneumonia", cx[i] - r, cy[i] - r, 2 * r, 2 * r, S, S] for i in np.flatnonzero(boxed))
    cfg = DataConfig.from_section(root=str(root), image_size=S)
    folder = prepared_path(DOMAINS.get("mimic_cxr"), cfg, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = (yy ** 2 + xx ** 2) <= r * r
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 1, S, S))
    masks = np.lib.format.open_memmap(folder / "masks.npy", mode="w+", dtype=bool, shape=(n, S, S))
    for start in range(0, n, CHUNK):
        block = rng.integers(40, 120, size=(min(CHUNK, n - start), S, S), dtype=np.uint8)
        for j in range(len(block)):
            i = start + j
            if label[i]:
                patch = block[j, cy[i] - r:cy[i] + r + 1, cx[i] - r:cx[i] + r + 1]
                patch[disc] = 220
            if boxed[i]:
                masks[i, cy[i] - r:cy[i] + r, cx[i] - r:cx[i] + r] = True
        images[start:start + len(block), 0] = block
    images.flush()
    masks.flush()
    del images, masks
    atomic_write(folder / "meta.parquet", lambda p: meta.to_parquet(p, index=False))
    info = {"images": n, "skipped": 0, "image_size": S, "seconds": 0.0, "images_per_second": None, "workers": 1,
            "written_by": "mmpkd_core.data.scale", **stamp()}
    atomic_write(folder / "prepared.json", lambda p: p.write_text(json.dumps(info, indent=1)))
    return cfg
