import numpy as np
import pytest

from mmpkd_core.data import DOMAINS, DataConfig, load_domain
from mmpkd_core.data.base import PREPARED_COUNT

CFG = DataConfig(n_train=100, n_val=30, n_test=30, image_size=32, seed=3)


@pytest.mark.parametrize("domain", [d for d in DOMAINS.names() if not DOMAINS.get(d).is_real])
def test_generation_is_deterministic_and_seed_dependent(domain):
    gen = DOMAINS.get(domain).generate
    a, b = gen(CFG), gen(CFG)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert list(a.image_ids) == list(b.image_ids)
    c = gen(DataConfig(n_train=100, n_val=30, n_test=30, image_size=32, seed=4))
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (160, 1, 32, 32) and a.images.dtype == np.float32
    assert a.images.min() >= 0 and a.images.max() <= 1
    assert (np.unique(a.split, return_counts=True)[1] == [30, 100, 30]).all()  # test, train, val


@pytest.mark.parametrize("domain", [d for d in DOMAINS.names() if not DOMAINS.get(d).is_real])
def test_label_noise_flips_exactly_that_share_of_training_labels_only(domain):
    d = DOMAINS.get(domain).generate(DataConfig(n_train=100, n_val=30, n_test=30, image_size=32, seed=1,
                                                label_noise=0.3))
    wrong = d.labels != d.true_labels
    assert wrong[d.index("train")].sum() == 30
    assert not wrong[d.index("val")].any() and not wrong[d.index("test")].any()


def test_cxr_masks_only_on_findings_and_reports_state_the_truth():
    d = DOMAINS.get("synthetic_cxr").generate(CFG)
    has_roi = d.masks.any(axis=(1, 2))
    np.testing.assert_array_equal(has_roi, d.true_labels == 1)
    for text, y in zip(d.text, d.true_labels):
        assert ("left" in text or "right" in text) == bool(y), text


def test_ddsm_every_image_has_a_mass_and_the_metadata_columns():
    d = DOMAINS.get("synthetic_ddsm").generate(CFG)
    assert d.masks.any(axis=(1, 2)).all()
    assert list(d.table.columns) == ["breast_density", "left_or_right_breast", "image_view", "abnormality_type",
                                     "mass_shape", "mass_margins", "assessment", "subtlety"]
    # assessment carries the pathology (BI-RADS 4-5 far more often when malignant)
    high = d.table["assessment"].to_numpy() >= 4
    assert high[d.true_labels == 1].mean() > high[d.true_labels == 0].mean() + 0.3


def test_cache_generates_once(tmp_path):
    before = PREPARED_COUNT["generated"]
    a = load_domain("synthetic_ddsm", CFG, tmp_path)
    b = load_domain("synthetic_ddsm", CFG, tmp_path)
    assert PREPARED_COUNT["generated"] == before + 1
    np.testing.assert_array_equal(a.images, b.images)
    assert a.table.equals(b.table)


def test_cxr_shortcut_marker_follows_the_given_label_in_training_only():
    gen = DOMAINS.get("synthetic_cxr").generate
    plain = gen(DataConfig(n_train=400, n_val=200, n_test=200, image_size=48, seed=2, label_noise=0.4))
    marked = gen(DataConfig(n_train=400, n_val=200, n_test=200, image_size=48, seed=2, label_noise=0.4, shortcut=0.9))
    m = marked.images[:, 0, 1:5, 1:5].min(axis=(1, 2)) == np.float32(0.9)  # the 4x4 marker at (1, 1)
    np.testing.assert_array_equal(plain.images[~m], marked.images[~m])  # nothing else moved
    np.testing.assert_array_equal(plain.labels, marked.labels)
    tr, held = marked.split == "train", marked.split != "train"
    assert 0.85 < m[tr & (marked.labels == 1)].mean() < 0.95 and 0.05 < m[tr & (marked.labels == 0)].mean() < 0.15
    # on validation and test images it says nothing about the truth
    assert abs(m[held & (marked.true_labels == 1)].mean() - m[held & (marked.true_labels == 0)].mean()) < 0.15
    assert not marked.masks[:, 1:5, 1:5].any()  # the ROI is the opacity, never the marker


@pytest.mark.parametrize("cfg,domain,key", [
    (DataConfig(), "synthetic_cxr", "649b7ca33f8fbf1f"),
    (DataConfig(n_train=100, image_size=64, label_noise=0.2), "synthetic_ddsm", "fe74ffe23d034222"),
    (DataConfig(shortcut=0.5, seed=3), "synthetic_cxr", "3af6b7387348620d"),
    (DataConfig.from_section(options={"max_train": 50, "view": "CC"}, skip_bad=True), "synthetic_ddsm",
     "be83c774cdafbb7a"),
])
def test_data_keys_are_stable(cfg, domain, key):
    """The data cache's folders are named by these keys: a changed key regenerates every cached data set."""
    assert cfg.key(domain) == key


def test_a_real_data_sets_key_is_its_config_and_its_tables(tmp_path):
    """A real domain's key hashes the config's JSON with the tables' digest appended (as before the key went
    through stable_hash): a prepared cache and its stored baselines stay found."""
    import hashlib
    import json

    import real_layouts

    cfg = DataConfig.from_section(root=str(real_layouts.cbis_ddsm(tmp_path / "ddsm")), options={"max_train": 8})
    tables = DOMAINS.get("cbis_ddsm").fingerprint(cfg)
    blob = json.dumps({"domain": "cbis_ddsm", **cfg.identity()}, sort_keys=True) + tables
    assert tables and cfg.key("cbis_ddsm") == hashlib.sha256(blob.encode()).hexdigest()[:16]
