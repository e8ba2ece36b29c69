"""``mimic_cxr``: MIMIC-CXR-JPG chest X-rays with their free-text reports, for the text teacher.

Layout (``data.root``): the MIMIC-CXR-JPG tree (``files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg``) with its
tables at the root (``mimic-cxr-2.0.0-metadata.csv``, ``-split.csv``, ``-chexpert.csv``,
``-negbio.csv``; gzipped or not); the reports of MIMIC-CXR (``sSTUDY.txt`` under
``mimic-cxr-reports/files/`` or ``files/``, or ``data.options.reports``); and MS-CXR
(``MS_CXR_Local_Alignment_v*.csv`` at the root, or ``data.options.ms_cxr``).

Label: ``data.options.finding`` (a CheXpert/NegBio column; default Pneumonia) from
``data.options.labeler``; a blank is negative; an uncertain label (-1) is excluded, or read as
positive or negative (``uncertain``). The report text is the chosen sections (``sections``: findings,
impression) where the report has them, else the whole report.

ROI: the MS-CXR boxes. Localization is scored only on images that have a box of the chosen finding.
MS-CXR boxes are few and mostly outside the official test split, so the subjects with a box of the
finding (all their images) leave the official split: ``ms_cxr_val_fraction`` of them (by subject)
become validation -- the engine tunes attention methods and picks recipes on validation ROIs -- and
the rest test. All other images keep the official split (``validate`` is validation).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mmpkd_core.data.base import DOMAINS, DataConfig, Domain, DomainData, noisy_training_labels, training_subset
from mmpkd_core.data.prepared import DataError, Item, data_root, tables_digest
from mmpkd_core.data.stream import Rows

TABLES = {"metadata": "mimic-cxr-2.0.0-metadata.csv", "split": "mimic-cxr-2.0.0-split.csv",
          "chexpert": "mimic-cxr-2.0.0-chexpert.csv", "negbio": "mimic-cxr-2.0.0-negbio.csv"}
REQUIRED = {"metadata": ["dicom_id", "subject_id", "study_id", "ViewPosition"],
            "split": ["dicom_id", "study_id", "subject_id", "split"], "chexpert": ["subject_id", "study_id"],
            "negbio": ["subject_id", "study_id"]}
MS_CXR_COLUMNS = ["dicom_id", "category_name", "x", "y", "w", "h", "image_width", "image_height"]
SECTION = re.compile(r"^\s*([A-Z][A-Z /]+):", re.MULTILINE)


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    finding: str = "Pneumonia"
    labeler: Literal["chexpert", "negbio"] = "chexpert"
    uncertain: Literal["exclude", "positive", "negative"] = "exclude"
    sections: list[Literal["findings", "impression"]] = ["findings", "impression"]
    views: list[str] = ["PA", "AP"]
    ms_cxr_val_fraction: float = Field(0.3, gt=0, lt=1)
    reports: str | None = None  # the reports' folder; default: mimic-cxr-reports/files or files under the root
    ms_cxr: str | None = None  # the MS-CXR CSV; default: MS_CXR_Local_Alignment_v*.csv at the root
    max_train: int | None = Field(None, ge=2)  # a reproducible subset of the training images, by subject
    stratify: Literal["label", "none"] = "label"  # keep each label's share in that subset


def _root(cfg: DataConfig) -> Path:
    return data_root(cfg, "mimic_cxr", "the MIMIC-CXR-JPG folder with its CSVs")


def _table_path(root: Path, name: str) -> Path:
    for p in (root / name, root / f"{name}.gz"):
        if p.is_file():
            return p
    raise DataError(f"{name} (or {name}.gz) is missing in {root}")


def _ms_cxr_path(root: Path, opts: Options) -> Path:
    if opts.ms_cxr:
        p = Path(opts.ms_cxr).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_file():
            raise DataError(f"data.options.ms_cxr: {p} does not exist")
        return p
    found = sorted(root.glob("MS_CXR_Local_Alignment_v*.csv"))
    if not found:
        raise DataError(f"no MS_CXR_Local_Alignment_v*.csv in {root}: MS-CXR boxes are the ROI ground truth; "
                        "put the CSV there or name it in data.options.ms_cxr")
    return found[-1]


def _options(cfg: DataConfig) -> Options:
    return Options(**cfg.option_dict())


def fingerprint(cfg: DataConfig) -> str:
    root, opts = _root(cfg), _options(cfg)
    tables = [_table_path(root, n) for n in TABLES.values()] + [_ms_cxr_path(root, opts)]
    return tables_digest(tables) + f"|reports:{_reports_base(root, opts)}"


def _read(path: Path, required: list[str]) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path.name} has no column '{missing[0]}' ({len(missing)} missing); "
                        f"it has: {', '.join(df.columns)}")
    return df


def sections(text: str) -> dict[str, str]:
    """The report's sections by lower-case heading (``findings``, ``impression``, ...)."""
    heads = list(SECTION.finditer(text))
    out = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out[m.group(1).strip().lower()] = " ".join(text[m.end():end].split())
    return out


def _reports_base(root: Path, opts: Options) -> Path:
    if opts.reports:
        p = Path(opts.reports).expanduser()
        return p if p.is_absolute() else root / p
    return root / "mimic-cxr-reports" / "files" if (root / "mimic-cxr-reports" / "files").is_dir() else root / "files"


def plan(cfg: DataConfig):
    """One ``Item`` and one metadata row per image listed in the metadata CSV."""
    root, opts, skip_bad = _root(cfg), _options(cfg), cfg.skip_bad
    meta = _read(_table_path(root, TABLES["metadata"]), REQUIRED["metadata"])
    split = _read(_table_path(root, TABLES["split"]), REQUIRED["split"])[["dicom_id", "split"]]
    rows = meta.merge(split, on="dicom_id", how="left")
    if rows["split"].isna().any() or (rows["split"] == "").any():
        bad = rows[rows["split"].isna() | (rows["split"] == "")]
        raise DataError(f"{len(bad)} image(s) of the metadata CSV are not in the split CSV; "
                        f"first: {bad.dicom_id.iloc[0]}")
    for name in ("chexpert", "negbio"):
        lab = _read(_table_path(root, TABLES[name]), REQUIRED[name])
        lab = lab.rename(columns={c: f"{name}:{c}" for c in lab.columns if c not in ("subject_id", "study_id")})
        rows = rows.merge(lab, on=["subject_id", "study_id"], how="left")
    ms = _read(_ms_cxr_path(root, opts), MS_CXR_COLUMNS)
    reports = _reports_base(root, opts)
    items, texts, problems = [], [], []
    boxes = {d: g for d, g in ms.groupby("dicom_id")}
    for r in rows.itertuples(index=False):
        sub = f"p{r.subject_id[:2]}/p{r.subject_id}"
        image = root / "files" / sub / f"s{r.study_id}" / f"{r.dicom_id}.jpg"
        report = reports / sub / f"s{r.study_id}.txt"
        if not image.is_file():
            problems.append((r.dicom_id, f"missing image {image}"))
        elif not report.is_file():
            problems.append((r.dicom_id, f"missing report {report}"))
        g = boxes.get(r.dicom_id)
        items.append(Item(r.dicom_id, image,
                          boxes=[] if g is None else [tuple(map(float, b))
                                                      for b in g[["x", "y", "w", "h"]].to_numpy()],
                          box_size=None if g is None else (int(float(g.image_width.iloc[0])),
                                                           int(float(g.image_height.iloc[0])))))
        texts.append(report.read_text(errors="replace") if report.is_file() else "")
    if problems and not skip_bad:
        raise DataError(f"{len(problems)} image(s) of the metadata CSV have a missing file; first: {problems[0][1]}. "
                        "Fix data.root (and data.options.reports) or pass --skip-bad to skip them")
    bad = {d for d, _ in problems}
    keep = np.array([it.image_id not in bad for it in items])
    rows = rows.assign(report=texts, ms_cxr_categories=[
        "|".join(sorted(set(boxes[d]["category_name"]))) if d in boxes else "" for d in rows["dicom_id"]])
    meta = rows[keep].reset_index(drop=True).rename(columns={"dicom_id": "image_id"})
    return [it for it, k in zip(items, keep) if k], meta, problems


def report_text(report: str, chosen: list[str]) -> str:
    parts = sections(report)
    picked = [parts[s] for s in chosen if parts.get(s)]
    return " ".join(picked) if picked else " ".join(report.split())


def view(cfg: DataConfig, images: np.ndarray, masks: np.ndarray, meta: pd.DataFrame) -> DomainData:
    opts = _options(cfg)
    col = f"{opts.labeler}:{opts.finding}"
    if col not in meta.columns:
        known = [c.split(":", 1)[1] for c in meta.columns if c.startswith(f"{opts.labeler}:")]
        raise DataError(f"data.options.finding: unknown column '{opts.finding}' in the {opts.labeler} labels; "
                        f"known: {', '.join(known)}")
    raw = pd.to_numeric(meta[col], errors="coerce").fillna(0.0).to_numpy()
    keep = np.array(meta["ViewPosition"].isin(opts.views))
    if opts.uncertain == "exclude":
        keep &= raw != -1.0
    label = np.where(raw == -1.0, 1.0 if opts.uncertain == "positive" else 0.0, raw).astype(np.int64)
    idx = np.flatnonzero(keep)
    meta = meta.iloc[idx].reset_index(drop=True)
    true = label[idx]
    has_box = meta["ms_cxr_categories"].str.split("|").map(lambda c: opts.finding in c).to_numpy()
    split = meta["split"].map({"train": "train", "validate": "val", "test": "test"}).to_numpy(object)
    subjects = meta["subject_id"].to_numpy(str)
    roi_subjects = np.unique(subjects[has_box])
    rng = np.random.default_rng(cfg.seed)
    n_val = max(1, int(round(opts.ms_cxr_val_fraction * len(roi_subjects)))) if len(roi_subjects) > 1 else 0
    val_subjects = set(rng.choice(roi_subjects, size=n_val, replace=False)) if n_val else set()
    moved = np.isin(subjects, roi_subjects)
    split[moved] = np.where(np.isin(subjects[moved], list(val_subjects)), "val", "test")
    split = split.astype(str)
    subset = ""
    if opts.max_train is not None:
        keep, subset = training_subset(split, true, subjects, opts.max_train, opts.stratify, cfg.seed)
        idx, meta, true, split, has_box = (idx[keep], meta[keep].reset_index(drop=True), true[keep], split[keep],
                                           has_box[keep])
    roi = Rows(masks.file, masks.index[idx], blank=~has_box)  # score only the boxes of the chosen finding
    labels = noisy_training_labels(true, split, cfg.label_noise or 0.0, rng)
    return DomainData(domain="mimic_cxr", modality="text", images=Rows(images.file, images.index[idx]),
                      labels=labels, true_labels=true, masks=roi, split=split, image_ids=meta["image_id"].to_numpy(str),
                      text=[report_text(r, opts.sections) for r in meta["report"]], subset=subset)


DOMAINS.register("mimic_cxr")(Domain("mimic_cxr", "text", None, 0.0, plan=plan, view=view,
                                     fingerprint=fingerprint, synthetic="synthetic_cxr", options=Options))
