"""Tiny data sets in the real layouts: CBIS-DDSM (DICOMs written with pydicom, the TCIA CSV headers)
and MIMIC-CXR-JPG (JPEGs, the label/split/metadata CSVs, a report folder, an MS-CXR CSV).

Each image holds one bright blob on noise; its ROI (mask DICOM or MS-CXR box) covers the blob, and
the label and metadata follow the blob, so a teacher and a student have something to learn.
Used by the tests and by ``bench/prepare_throughput.py``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

MASS_HEADER = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
               "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
               "image file path", "cropped image file path", "ROI mask file path"]
CALC_HEADER = ["patient_id", "breast density", "left or right breast", "image view", "abnormality id",
               "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
               "image file path", "cropped image file path", "ROI mask file path"]


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2") -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.set_pixel_data(pixels, photometric, 16 if pixels.dtype == np.uint16 else 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _blob_image(rng, h: int, w: int, cy: float, cx: float, r: float, bright: float):
    yy, xx = np.mgrid[:h, :w]
    roi = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img = rng.normal(0.3, 0.05, (h, w)) + bright * roi
    return img.clip(0, 1), roi


def cbis_ddsm(root: Path, patients: int = 12, seed: int = 0, size: tuple[int, int] = (64, 48)) -> Path:
    """Write a CBIS-DDSM tree under ``root/CBIS-DDSM`` and the four CSVs at ``root``; two images a patient
    (CC and MLO), the first patients' second image in the test CSVs; one image holds two masses."""
    rng = np.random.default_rng(seed)
    h, w = size
    root.mkdir(parents=True, exist_ok=True)
    tree = root / "CBIS-DDSM"
    rows = {k: [] for k in ("mass_train", "mass_test", "calc_train", "calc_test")}
    for p in range(patients):
        pid = f"P_{p + 1:05d}"
        kind = "mass" if p % 3 else "calc"
        for view in ("CC", "MLO"):
            split = "test" if p < patients // 3 else "train"
            side = "LEFT" if p % 2 else "RIGHT"
            case = (f"{'Mass' if kind == 'mass' else 'Calc'}-{'Training' if split == 'train' else 'Test'}"
                    f"_{pid}_{side}_{view}")
            malignant = bool((p + (view == "MLO")) % 2)
            n_abn = 2 if (p == patients - 1 and view == "CC") else 1
            centres = [(rng.uniform(10, h - 10), rng.uniform(10, w - 10)) for _ in range(n_abn)]
            img = rng.normal(0.3, 0.05, (h, w))
            uid = f"1.3.6.1.4.1.9590.100.1.2.{p}{view == 'MLO':d}"
            image_rel = f"{case}/{uid}1/{uid}2/000000.dcm"
            for a, (cy, cx) in enumerate(centres, start=1):
                part, roi = _blob_image(rng, h, w, cy, cx, 5, 0.6 if malignant else 0.35)
                img = np.maximum(img, part * roi + img * ~roi)
                mask_rel = f"{case}_{a}/{uid}3{a}/{uid}4{a}/000001.dcm"
                write_dicom(tree / mask_rel, (roi * 255).astype(np.uint8))
                crop_rel = f"{case}_{a}/{uid}3{a}/{uid}4{a}/000000.dcm"
                path = "malignant" if malignant else "benign"
                pathology = "MALIGNANT" if malignant else ("BENIGN_WITHOUT_CALLBACK" if p == 4 else "BENIGN")
                shape = ("IRREGULAR", "SPICULATED") if path == "malignant" else ("OVAL", "CIRCUMSCRIBED")
                own = list(shape) if kind == "mass" else (["PLEOMORPHIC", "CLUSTERED"] if malignant else
                                                         ["PUNCTATE", "SCATTERED"])
                rows[f"{kind}_{split}"].append(
                    [pid, 1 + p % 4, side, view, a, "mass" if kind == "mass" else "calcification", *own,
                     5 if malignant else 2, pathology, 3, image_rel, crop_rel,
                     mask_rel + ("\n" if a == 1 and p == 1 else "")])  # the real CSVs end some paths with a newline
            write_dicom(tree / image_rel, (img.clip(0, 1) * 4095).astype(np.uint16))
    for key, body in rows.items():
        kind, split = key.split("_")
        with open(root / f"{kind}_case_description_{split}_set.csv", "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(MASS_HEADER if kind == "mass" else CALC_HEADER)
            wr.writerows(body)
    return root


LABELS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
          "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
          "Pneumothorax", "Support Devices"]


def mimic_cxr(root: Path, subjects: int = 16, seed: int = 0, size: tuple[int, int] = (56, 64)) -> Path:
    """Write a MIMIC-CXR-JPG tree (``files/pXX/pSUBJECT/sSTUDY/DICOM.jpg``, the metadata, split,
    CheXpert and NegBio CSVs), the reports (``mimic-cxr-reports/files/.../sSTUDY.txt``) and an MS-CXR
    CSV with boxes for every other subject's pneumonia images; two studies a subject."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    meta, split_rows, chex, negbio, boxes = [], [], [], [], []
    for s in range(subjects):
        subject = 10000000 + s
        for k in range(2):
            study = 50000000 + 10 * s + k
            dicom = f"{s:08x}-{k:08x}-0000-0000-000000000000"
            positive = (s + k) % 2 == 1
            uncertain = s == 3 and k == 0
            cy, cx = rng.uniform(12, h - 12), rng.uniform(12, w - 12)
            img, roi = _blob_image(rng, h, w, cy, cx, 6, 0.5 if positive else 0.0)
            folder = root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{dicom}.jpg", quality=95)
            report = root / "mimic-cxr-reports" / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            finding = ("Focal consolidation in the lung, consistent with pneumonia." if positive else
                       "The lungs are clear. No focal consolidation.")
            impression = ("Pneumonia." if positive else "No acute cardiopulmonary process.")
            report.write_text(f"                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
                              f" INDICATION:  Cough.\n\n FINDINGS:\n \n {finding}\n\n IMPRESSION:\n \n {impression}\n")
            meta.append([dicom, subject, study, "CHEST (PA AND LAT)", "PA" if k == 0 else "AP", h, w])
            split_rows.append([dicom, study, subject,
                               "test" if s >= subjects - 3 else ("validate" if s == 0 else "train")])
            label = -1.0 if uncertain else (1.0 if positive else (0.0 if s % 4 else ""))
            row = [subject, study] + ["" for _ in LABELS]
            row[2 + LABELS.index("Pneumonia")] = label
            chex.append(row)
            negbio.append(row)
            if positive and s % 2 == 1:
                ys, xs = np.nonzero(roi)
                boxes.append([dicom, "Pneumonia", "pneumonia",
                              f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg",
                              xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1, w, h])

    def write(name, header, body):
        with open(root / name, "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(header)
            wr.writerows(body)

    write("mimic-cxr-2.0.0-metadata.csv", ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                                           "ViewPosition", "Rows", "Columns"], meta)
    write("mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    write("mimic-cxr-2.0.0-chexpert.csv", ["subject_id", "study_id", *LABELS], chex)
    write("mimic-cxr-2.0.0-negbio.csv", ["subject_id", "study_id", *LABELS], negbio)
    write("MS_CXR_Local_Alignment_v1.1.0.csv", ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h",
                                                 "image_width", "image_height"], boxes)
    return root
