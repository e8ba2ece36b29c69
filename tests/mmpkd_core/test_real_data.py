"""The real-data adapters on tiny data sets in the real layouts (tests/real_layouts.py)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import real_layouts

from mmpkd_core.data import DataConfig, load_domain
from mmpkd_core.data.mimic_cxr import report_text, sections
from mmpkd_core.data.prepared import PREPARE_COUNT, DataError, to_square


@pytest.fixture(scope="module")
def ddsm_root(tmp_path_factory):
    return real_layouts.cbis_ddsm(tmp_path_factory.mktemp("ddsm"))


@pytest.fixture(scope="module")
def cxr_root(tmp_path_factory):
    return real_layouts.mimic_cxr(tmp_path_factory.mktemp("cxr"))


def cfg(root, **kw):
    opts = kw.pop("options", {})
    kw.setdefault("image_size", 32)
    return DataConfig(root=str(root), options=json.dumps(opts, sort_keys=True), **kw)


def copy(root, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    return dst


def test_to_square_pads_bottom_right_and_keeps_the_aspect_ratio():
    a = np.zeros((4, 2), dtype=np.float32)
    a[0, 0] = 1.0  # top-left pixel of a 4x2 (tall) image
    out = to_square(a, 2)  # padded to 4x4, then 2x2 boxes
    np.testing.assert_allclose(out, [[0.25, 0.0], [0.0, 0.0]])


def test_cbis_ddsm_one_row_per_image_with_the_papers_label_rules(ddsm_root, tmp_path):
    d = load_domain("cbis_ddsm", cfg(ddsm_root), str(tmp_path))
    # images stay uint8 on disk (read a batch at a time, standardised on the device)
    assert d.images.shape == (24, 1, 32, 32) and d.images.dtype == np.uint8 and d.modality == "tabular"
    on_disk = np.load(Path(d.images.file.path))  # rows read by pread are the prepared file's rows
    np.testing.assert_array_equal(np.asarray(d.images), on_disk[d.images.index])
    np.testing.assert_array_equal(d.images[[5, 2, 5]], on_disk[d.images.index[[5, 2, 5]]])
    ids = list(d.image_ids)
    # 12 patients x (CC, MLO); the first 4 patients are the official test split
    assert sum(i.startswith(("Mass-Test", "Calc-Test")) for i in ids) == 8
    assert all(s == "test" for i, s in zip(ids, d.split) if "-Test_" in i)
    # validation is carved from train by patient: both views of a patient share a split
    patients = pd.Series(d.split, index=[i.split("_P_")[1][:5] for i in ids])
    assert patients.groupby(level=0).nunique().max() == 1 and (d.split == "val").sum() >= 2
    # malignant iff (patient + MLO) is odd; patient 5 (index 4) is BENIGN_WITHOUT_CALLBACK -> benign by default
    for i, y in zip(ids, d.true_labels):
        p, view = int(i.split("_P_")[1][:5]) - 1, i.rsplit("_", 1)[1]
        assert y == (p + (view == "MLO")) % 2
    # the last patient's CC image holds two masses: one row, both masks, n_abnormalities 2
    two = ids.index("Mass-Training_P_00012_LEFT_CC")
    assert d.table["n_abnormalities"].iloc[two] == 2
    assert d.masks[two].sum() > 1.6 * np.median(np.asarray(d.masks).sum(axis=(1, 2)))
    assert "assessment" not in d.table.columns  # BI-RADS leaks the label: not privileged by default
    assert d.table["breast_density"].dtype.kind == "i" and d.table["image_view"].dtype.kind in "OTU"


def test_cbis_ddsm_mask_lands_where_the_lesion_is(ddsm_root, tmp_path):
    d = load_domain("cbis_ddsm", cfg(ddsm_root), str(tmp_path))
    images, masks = np.asarray(d.images, dtype=np.float32) / 255, np.asarray(d.masks)
    for k in range(len(d.image_ids)):
        inside = images[k, 0][masks[k]].mean()
        outside = images[k, 0][~masks[k]][images[k, 0][~masks[k]] > 0].mean()  # skip the padding
        assert inside > outside + 0.05, d.image_ids[k]
    # images are 64 tall x 48 wide: padded on the right, so the last quarter of columns is empty
    assert d.images[:, 0, :, 25:].max() == 0 and not d.masks[:, :, 25:].any()


def test_cbis_ddsm_options_select_rows_and_privileged_columns(ddsm_root, tmp_path):
    d = load_domain("cbis_ddsm", cfg(ddsm_root, options={"benign_without_callback": "exclude", "abnormality": ["mass"],
                                                        "privileged_columns": ["assessment", "mass_shape"]}),
                    str(tmp_path))
    assert all(i.startswith("Mass-") for i in d.image_ids)
    assert "Mass-Training_P_00005_RIGHT_CC" not in set(d.image_ids)  # its one abnormality: BENIGN_WITHOUT_CALLBACK
    assert "Mass-Training_P_00005_RIGHT_MLO" in set(d.image_ids)
    assert list(d.table.columns) == ["assessment", "mass_shape"]
    np.testing.assert_array_equal(d.table["assessment"].to_numpy() == 5, d.true_labels == 1)


def test_prepared_cache_is_shared_and_not_rebuilt_for_other_options(ddsm_root, tmp_path):
    before = PREPARE_COUNT["prepared"]
    a = load_domain("cbis_ddsm", cfg(ddsm_root), str(tmp_path))
    b = load_domain("cbis_ddsm", cfg(ddsm_root, options={"abnormality": ["calc"]}, seed=3), str(tmp_path))
    assert PREPARE_COUNT["prepared"] == before + 1  # options and seeds reuse the decoded images
    assert len(b.image_ids) < len(a.image_ids)
    folder = next((tmp_path / "prepared").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["images.npy", "masks.npy", "meta.parquet", "prepared.json"]
    assert np.load(folder / "images.npy", mmap_mode="r").dtype == np.uint8
    load_domain("cbis_ddsm", cfg(ddsm_root, image_size=16), str(tmp_path))
    assert PREPARE_COUNT["prepared"] == before + 2  # another size is another cache


def test_mimic_cxr_labels_splits_sections_and_ms_cxr_boxes(cxr_root, tmp_path):
    d = load_domain("mimic_cxr", cfg(cxr_root), str(tmp_path))
    assert d.modality == "text" and len(d.text) == len(d.image_ids) == 31  # one uncertain label excluded
    # a blank label is negative, 1.0 positive: positive iff (subject + study) is odd
    meta = pd.read_csv(cxr_root / "mimic-cxr-2.0.0-metadata.csv", dtype=str).set_index("dicom_id")
    for i, y in zip(d.image_ids, d.true_labels):
        s, k = int(meta.loc[i, "subject_id"]) - 10000000, int(meta.loc[i, "study_id"]) % 10
        assert y == (s + k) % 2
    ms = pd.read_csv(cxr_root / "MS_CXR_Local_Alignment_v1.1.0.csv")
    boxed = set(ms["dicom_id"]) & set(d.image_ids)  # less the image whose label is uncertain (excluded)
    assert len(boxed) == len(ms) - 1
    has_roi = np.asarray(d.masks).any(axis=(1, 2))
    np.testing.assert_array_equal(np.flatnonzero(has_roi & (d.split == "test")), d.roi_index("test"))
    assert {i for i, r in zip(d.image_ids, has_roi) if r} == boxed  # ROI only where MS-CXR has a box
    roi_subjects = {meta.loc[i, "subject_id"] for i in boxed}
    moved = np.array([meta.loc[i, "subject_id"] in roi_subjects for i in d.image_ids])
    assert set(d.split[moved]) == {"val", "test"} and "train" in set(d.split[~moved])
    assert d.masks[has_roi & (d.split == "val")].any() and d.masks[has_roi & (d.split == "test")].any()
    assert d.text[0] == "The lungs are clear. No focal consolidation. No acute cardiopulmonary process."
    # box -> mask: the box's pixel area, scaled by (32 / 64)^2 after padding 56x64 to 64x64
    row = ms.iloc[0]
    k = list(d.image_ids).index(row.dicom_id)
    assert abs(d.masks[k].sum() - row.w * row.h / 4) <= (row.w + row.h) / 2 + 1


def test_mimic_cxr_uncertain_policy_and_finding_option(cxr_root, tmp_path):
    pos = load_domain("mimic_cxr", cfg(cxr_root, options={"uncertain": "positive", "sections": ["impression"]}),
                      str(tmp_path))
    assert len(pos.image_ids) == 32 and pos.text[0] == "No acute cardiopulmonary process."
    with pytest.raises(DataError, match="^data.options.finding: unknown column 'Pneumonai' in the chexpert labels; "
                                        "known: Atelectasis, Cardiomegaly"):
        load_domain("mimic_cxr", cfg(cxr_root, options={"finding": "Pneumonai"}), str(tmp_path))


def test_report_sections():
    text = " FINAL REPORT\n INDICATION: Cough.\n\n FINDINGS:\n Clear lungs.\n\n IMPRESSION:\n  Normal.\n"
    assert sections(text) == {"indication": "Cough.", "findings": "Clear lungs.", "impression": "Normal."}
    assert report_text(text, ["impression", "findings"]) == "Normal. Clear lungs."
    assert report_text("No headings here.", ["findings"]) == "No headings here."


# ------------------------------------------------------------------ bad input, one line each

def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=f"^data root {tmp_path / 'nope'} does not exist or is not a folder$"):
        load_domain("cbis_ddsm", cfg(tmp_path / "nope"), str(tmp_path))


def test_csv_row_whose_file_is_missing_stops_or_is_skipped_with_a_list(ddsm_root, tmp_path):
    root = copy(ddsm_root, tmp_path)
    victim = next((root / "CBIS-DDSM").glob("Mass-Training_P_00006_LEFT_CC/*/*/000000.dcm"))
    victim.unlink()
    rel = victim.relative_to(root / "CBIS-DDSM").as_posix()
    with pytest.raises(DataError, match=(
            f"^1 CSV row\\(s\\) name files that do not exist under {root / 'CBIS-DDSM'}; first: {rel} "
            r"\(mass_case_description_train_set.csv row \d+, column 'image file path'\). Fix data.root or pass "
            r"--skip-bad to skip them \(they are listed in the prepared cache\)$")):
        load_domain("cbis_ddsm", cfg(root), str(tmp_path))
    d = load_domain("cbis_ddsm", cfg(root, skip_bad=True), str(tmp_path))
    assert len(d.image_ids) == 23 and "Mass-Training_P_00006_LEFT_CC" not in set(d.image_ids)
    skipped = pd.read_csv(next((tmp_path / "prepared").iterdir()) / "skipped.csv")
    assert list(skipped["image_id"]) == [rel] and "missing file" in skipped["problem"][0]


def test_unreadable_dicom(ddsm_root, tmp_path):
    root = copy(ddsm_root, tmp_path)
    victim = next((root / "CBIS-DDSM").glob("Calc-Test_P_00001_RIGHT_CC/*/*/000000.dcm"))
    victim.write_bytes(b"not a dicom at all")
    with pytest.raises(DataError, match=f"^1 of 24 images could not be prepared; first: unreadable image {victim}: "):
        load_domain("cbis_ddsm", cfg(root), str(tmp_path))
    left = [p for p in (tmp_path / "prepared").rglob("*") if p.is_file()] if (tmp_path / "prepared").exists() else []
    assert left == []  # nothing half-written


def test_mask_whose_size_does_not_match_its_image(ddsm_root, tmp_path):
    root = copy(ddsm_root, tmp_path)
    mask = next((root / "CBIS-DDSM").glob("Calc-Test_P_00001_RIGHT_MLO_1/*/*/000001.dcm"))
    real_layouts.write_dicom(mask, np.zeros((30, 20), dtype=np.uint8))
    with pytest.raises(DataError, match=f"^1 of 24 images could not be prepared; first: ROI mask {mask} is 20x30 but "
                                        "its image .* is 48x64. Fix the files or pass --skip-bad"):
        load_domain("cbis_ddsm", cfg(root), str(tmp_path))


def test_unknown_or_missing_columns(ddsm_root, tmp_path):
    with pytest.raises(DataError, match="^data.options.privileged_columns: unknown column 'shoe_size'; known: "):
        load_domain("cbis_ddsm", cfg(ddsm_root, options={"privileged_columns": ["shoe_size"]}), str(tmp_path))
    root = copy(ddsm_root, tmp_path)
    csv = root / "calc_case_description_test_set.csv"
    csv.write_text(csv.read_text().replace("pathology", "pathologyy", 1))
    with pytest.raises(DataError, match="^calc_case_description_test_set.csv has no column 'pathology' "
                                        "\\(1 missing\\); it has: patient_id, breast_density"):
        load_domain("cbis_ddsm", cfg(root), str(tmp_path))


def test_no_case_description_csv(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="^no CBIS-DDSM case-description CSV in .*; expected any of: "
                                        "mass_case_description_train_set.csv"):
        load_domain("cbis_ddsm", cfg(tmp_path / "empty"), str(tmp_path))


def test_mimic_missing_report_and_missing_ms_cxr(cxr_root, tmp_path):
    root = copy(cxr_root, tmp_path)
    victim = next((root / "mimic-cxr-reports" / "files").rglob("s50000040.txt"))
    victim.unlink()
    with pytest.raises(DataError, match=f"^1 image\\(s\\) of the metadata CSV have a missing file; first: missing "
                                        f"report {victim}. Fix data.root"):
        load_domain("mimic_cxr", cfg(root), str(tmp_path))
    d = load_domain("mimic_cxr", cfg(root, skip_bad=True), str(tmp_path))
    assert len(d.image_ids) == 30  # 32, less the uncertain label, less the image without a report
    (root / "MS_CXR_Local_Alignment_v1.1.0.csv").unlink()
    with pytest.raises(DataError, match="^no MS_CXR_Local_Alignment_v\\*.csv in .*: MS-CXR boxes are the ROI ground"):
        load_domain("mimic_cxr", cfg(root), str(tmp_path))


def test_cbis_ddsm_reads_nbias_descriptive_layout(ddsm_root, tmp_path):
    """NBIA's downloader names the folders by date and series, not by the UIDs the CSVs give."""
    root = copy(ddsm_root, tmp_path)
    tree = root / "CBIS-DDSM"
    for case in sorted(p for p in tree.iterdir() if p.is_dir()):
        for f in list(case.rglob("*.dcm")):
            mask = case.name.rsplit("_", 1)[-1].isdigit() and f.name == "000001.dcm"
            series = "ROI mask images" if mask else ("cropped images" if case.name[-1].isdigit() else
                                                   "full mammogram images")
            dst = case / "07-20-2016-DDSM-NA-74994" / f"1.000000-{series}-24515" / ("1-2.dcm" if mask else "1-1.dcm")
            dst.parent.mkdir(parents=True, exist_ok=True)
            f.rename(dst)
        for d in sorted((p for p in case.glob("1.3.6.*")), reverse=True):
            shutil.rmtree(d)
    crop = (tree / "Calc-Test_P_00001_RIGHT_CC_1" / "07-20-2016-DDSM-NA-74994" / "1.000000-cropped images-24515"
            / "1-1.dcm")
    real_layouts.write_dicom(crop, np.zeros((9, 9), dtype=np.uint8))  # a cropped image beside the mask: not picked
    a = load_domain("cbis_ddsm", cfg(ddsm_root), str(tmp_path / "a"))
    b = load_domain("cbis_ddsm", cfg(root), str(tmp_path / "b"))
    np.testing.assert_array_equal(a.image_ids, b.image_ids)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
