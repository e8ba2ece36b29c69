"""``cbis_ddsm``: CBIS-DDSM mammograms with their case-description metadata, for the tabular teacher.

Layout (``data.root``): the four case-description CSVs as TCIA distributes them
(``mass_case_description_{train,test}_set.csv``, ``calc_case_description_{train,test}_set.csv``) at
the root, with the image tree beside them or under ``CBIS-DDSM/``, in the classic TCIA layout that
the CSVs' ``image file path`` and ``ROI mask file path`` name. A PNG/JPEG conversion of that tree
(the same paths with ``.png``/``.jpg``/``.jpeg`` in place of ``.dcm``) is read as well, and so is
the descriptive layout of NBIA's downloader (``<case>/<date-...>/<n>.000000-full mammogram
images-<id>/1-1.dcm``, ``<case>_1/.../<n>.000000-ROI mask images-<id>/1-2.dcm``).

One row per image (a mammogram can hold several abnormalities): the ROI mask is the union of its
abnormalities' masks; the label is malignant (1) if any abnormality is, benign (0) otherwise;
``BENIGN_WITHOUT_CALLBACK`` counts as benign or is excluded (``data.options.benign_without_callback``);
the metadata row is the most severe abnormality's, with ``n_abnormalities``. Splits: the official
train/test; validation is carved from train by patient (``val_fraction``, seeded by ``data.seed``).

The privileged row is ``data.options.privileged_columns``; by default every descriptive column except
``assessment`` (BI-RADS), which all but states the label -- add it to study a leaking teacher.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mmpkd_core.data.base import DOMAINS, DataConfig, Domain, DomainData, noisy_training_labels, training_subset
from mmpkd_core.data.stream import Rows
from mmpkd_core.data.prepared import DataError, Item, data_root, tables_digest

CSVS = {("mass", "train"): "mass_case_description_train_set.csv",
        ("mass", "test"): "mass_case_description_test_set.csv",
        ("calc", "train"): "calc_case_description_train_set.csv",
        ("calc", "test"): "calc_case_description_test_set.csv"}
COMMON = ["patient_id", "breast_density", "left_or_right_breast", "image_view", "abnormality_id", "abnormality_type",
          "assessment", "pathology", "subtlety", "image_file_path", "cropped_image_file_path", "roi_mask_file_path"]
OWN = {"mass": ["mass_shape", "mass_margins"], "calc": ["calc_type", "calc_distribution"]}
DESCRIPTIVE = ["breast_density", "left_or_right_breast", "image_view", "abnormality_type", "mass_shape", "mass_margins",
               "calc_type", "calc_distribution", "subtlety", "n_abnormalities"]
SEVERITY = {"MALIGNANT": 2, "BENIGN": 1, "BENIGN_WITHOUT_CALLBACK": 0}
IMAGE_SUFFIXES = (".dcm", ".png", ".jpg", ".jpeg")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    abnormality: list[Literal["mass", "calc"]] = ["mass", "calc"]
    benign_without_callback: Literal["benign", "exclude"] = "benign"
    privileged_columns: list[str] = DESCRIPTIVE
    val_fraction: float = Field(0.15, gt=0, lt=1)
    max_train: int | None = Field(None, ge=2)  # a reproducible subset of the training images, by patient
    stratify: Literal["label", "none"] = "label"  # keep each label's share in that subset


def column_name(header: str) -> str:
    """The CSVs' headers, as one spelling: 'breast density' and 'breast_density' -> 'breast_density'."""
    return "_".join(header.strip().lower().split())


def _root(cfg: DataConfig) -> Path:
    return data_root(cfg, "cbis_ddsm", "the folder with the case-description CSVs")


def _tables(root: Path) -> dict[tuple[str, str], Path]:
    found = {k: root / name for k, name in CSVS.items() if (root / name).is_file()}
    if not found:
        raise DataError(f"no CBIS-DDSM case-description CSV in {root}; expected any of: {', '.join(CSVS.values())}")
    return found


def fingerprint(cfg: DataConfig) -> str:
    return tables_digest(list(_tables(_root(cfg)).values()))


def read_tables(root: Path) -> pd.DataFrame:
    """All abnormality rows with normalised column names, plus ``kind``, ``official_split`` and the CSV row."""
    frames = []
    for (kind, split), path in _tables(root).items():
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        df.columns = [column_name(c) for c in df.columns]
        missing = [c for c in COMMON + OWN[kind] if c not in df.columns]
        if missing:
            raise DataError(f"{path.name} has no column '{missing[0]}' ({len(missing)} missing); it has: "
                            f"{', '.join(df.columns)}")
        df = df[COMMON + OWN[kind]].copy()
        df["kind"], df["official_split"], df["csv"], df["csv_row"] = kind, split, path.name, np.arange(len(df)) + 2
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True)
    for c in ("image_file_path", "roi_mask_file_path", "pathology"):
        rows[c] = rows[c].str.strip()
    bad = ~rows["pathology"].isin(SEVERITY)
    if bad.any():
        r = rows[bad].iloc[0]
        raise DataError(f"{bad.sum()} row(s) have an unknown pathology; first: '{r.pathology}' ({r.csv} row "
                        f"{r.csv_row}); expected one of {', '.join(SEVERITY)}")
    return rows


def _image_base(root: Path) -> Path:
    return root / "CBIS-DDSM" if (root / "CBIS-DDSM").is_dir() else root


SERIES = {"image": "full mammogram images", "mask": "ROI mask images"}  # NBIA's descriptive series folders


def resolve(base: Path, rel: str, kind: str = "image") -> Path | None:
    """The file a CSV path names: as written (classic TCIA layout), its PNG/JPEG conversion, or --
    in the descriptive layout of NBIA's downloader, where the folders under the case folder carry
    the date and series description instead of UIDs -- the one DICOM of the case folder's
    ``full mammogram images`` (or ``ROI mask images``) series."""
    p = base / rel
    if p.is_file():
        return p
    for suffix in IMAGE_SUFFIXES:
        if p.with_suffix(suffix).is_file():
            return p.with_suffix(suffix)
    case = base / Path(rel).parts[0]
    if case.is_dir():
        found = [f for f in case.glob("*/*/*.dcm") if SERIES[kind].lower() in f.parent.name.lower()]
        if len(found) == 1:
            return found[0]
    return None


def plan(cfg: DataConfig) -> tuple[list[Item], pd.DataFrame, list[tuple[str, str]]]:
    """One ``Item`` and one metadata row per image; rows naming missing files stop here (or are skipped)."""
    root, skip_bad = _root(cfg), cfg.skip_bad
    rows = read_tables(root)
    base = _image_base(root)
    rows["image"] = [resolve(base, p, "image") for p in rows["image_file_path"]]
    rows["mask"] = [resolve(base, p, "mask") for p in rows["roi_mask_file_path"]]
    missing = rows["image"].isna() | rows["mask"].isna()
    skipped = []
    if missing.any():
        r = rows[missing].iloc[0]
        col = "image file path" if r["image"] is None else "ROI mask file path"
        name = r.image_file_path if r["image"] is None else r.roi_mask_file_path
        if not skip_bad:
            raise DataError(f"{missing.sum()} CSV row(s) name files that do not exist under {base}; first: {name} "
                            f"({r.csv} row {r.csv_row}, column '{col}'). Fix data.root or pass --skip-bad to skip "
                            "them (they are listed in the prepared cache)")
        skipped = [(str(r.image_file_path), f"{r.csv} row {r.csv_row}: missing file")
                   for r in rows[missing].itertuples()]
        rows = rows[~missing]
    rows = rows.assign(severity=rows["pathology"].map(SEVERITY))
    items, meta = [], []
    for _, g in rows.groupby("image_file_path", sort=True):
        lead = g.sort_values(["severity", "abnormality_id"], ascending=[False, True]).iloc[0]
        image_id = Path(lead.image_file_path).parts[0]
        items.append(Item(image_id, lead["image"], mask_paths=list(g["mask"])))
        row = {c: lead[c] for c in COMMON + OWN["mass"] + OWN["calc"] if c in lead.index and c not in (
            "image_file_path", "cropped_image_file_path", "roi_mask_file_path", "abnormality_id")}
        row.update(image_id=image_id, kind=lead.kind, official_split=lead.official_split, n_abnormalities=len(g),
                   pathologies="|".join(sorted(set(g["pathology"]))))
        meta.append(row)
    meta = pd.DataFrame(meta)
    for c in OWN["mass"] + OWN["calc"]:
        meta[c] = meta[c].fillna("") if c in meta else ""
    return items, meta, skipped


def carve_validation(split: np.ndarray, patients: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Move a ``fraction`` of the training patients (all their images) to ``val``."""
    split = split.copy()
    train_patients = np.unique(patients[split == "train"])
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(fraction * len(train_patients)))) if len(train_patients) > 1 else 0
    val = set(rng.choice(train_patients, size=n_val, replace=False))
    split[(split == "train") & np.isin(patients, list(val))] = "val"
    return split


def view(cfg: DataConfig, images: np.ndarray, masks: np.ndarray, meta: pd.DataFrame) -> DomainData:
    opts = Options(**cfg.option_dict())
    unknown = [c for c in opts.privileged_columns if c not in meta.columns or c in ("pathology", "pathologies")]
    if unknown:
        known = [c for c in meta.columns if c not in ("image_id", "kind", "official_split", "patient_id", "pathology",
                                                       "pathologies")]
        raise DataError(f"data.options.privileged_columns: unknown column '{unknown[0]}'; known: {', '.join(known)}")
    path = meta["pathologies"].str.split("|")
    malignant = path.map(lambda p: "MALIGNANT" in p).to_numpy()
    only_bwc = path.map(lambda p: set(p) == {"BENIGN_WITHOUT_CALLBACK"}).to_numpy()
    keep = np.array(meta["kind"].isin(opts.abnormality))
    if opts.benign_without_callback == "exclude":
        keep &= ~only_bwc
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise DataError("no image is left after data.options (abnormality, benign_without_callback)")
    meta = meta.iloc[idx].reset_index(drop=True)
    split = np.where(meta["official_split"] == "test", "test", "train")
    split = carve_validation(split, meta["patient_id"].to_numpy(), opts.val_fraction, cfg.seed)
    true = malignant[idx].astype(np.int64)
    subset = ""
    if opts.max_train is not None:
        keep, subset = training_subset(split, true, meta["patient_id"].to_numpy(str), opts.max_train, opts.stratify,
                                       cfg.seed)
        idx, meta, split, true = idx[keep], meta[keep].reset_index(drop=True), split[keep], true[keep]
    labels = noisy_training_labels(true, split, cfg.label_noise or 0.0, np.random.default_rng(cfg.seed))
    table = meta[opts.privileged_columns].copy()
    for c in table.columns:  # numbers stay numbers (density, subtlety); the rest are categories
        num = pd.to_numeric(table[c], errors="coerce")
        table[c] = num if num.notna().all() else table[c].astype(str)
    return DomainData(domain="cbis_ddsm", modality="tabular",
                      images=Rows(images.file, images.index[idx]), labels=labels, true_labels=true,
                      masks=Rows(masks.file, masks.index[idx]), split=split, image_ids=meta["image_id"].to_numpy(str),
                      table=table, subset=subset)


DOMAINS.register("cbis_ddsm")(Domain("cbis_ddsm", "tabular", None, 0.0, plan=plan, view=view,
                                     fingerprint=fingerprint, synthetic="synthetic_ddsm", options=Options))
