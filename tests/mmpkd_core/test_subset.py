"""data.options.max_train: a reproducible, stratified, patient-level training subset."""
import numpy as np
import pytest
import real_layouts

from mmpkd_core.data import DataConfig, load_domain
from mmpkd_core.data.base import training_subset

# 10 training patients of 2 images each (p0-p3 positive, p4-p9 negative), then 4 validation images
SPLIT = np.array(["train"] * 20 + ["val"] * 4)
GROUPS = np.array([f"p{i // 2}" for i in range(20)] + ["v0", "v0", "v1", "v1"])
LABELS = np.array([1] * 8 + [0] * 12 + [1, 0, 1, 0])


def test_whole_patients_each_label_keeps_its_share_and_validation_stays():
    keep, note = training_subset(SPLIT, LABELS, GROUPS, 10, "label", seed=0)
    tr = keep[:20]
    assert tr.sum() == 10 and keep[20:].all()
    assert LABELS[:20][tr].sum() == 4  # 8 of 20 positive -> 4 of 10
    taken = set(GROUPS[:20][tr])
    assert len(taken) == 5 and all(keep[:20][GROUPS[:20] == p].all() for p in taken)  # no patient split
    assert note == ("training subset: 10 of 20 training images (5 of 10 patients, whole patients, stratified by label, "
                    "seed 0; data.options.max_train 10); validation and test images all kept")
    again, _ = training_subset(SPLIT, LABELS, GROUPS, 10, "label", seed=0)
    np.testing.assert_array_equal(keep, again)  # reproducible
    others = {tuple(training_subset(SPLIT, LABELS, GROUPS, 10, "label", seed=s)[0]) for s in range(1, 6)}
    assert len(others) > 1  # the seed decides which patients


def test_a_subset_larger_than_the_training_split_keeps_everything():
    keep, note = training_subset(SPLIT, LABELS, GROUPS, 50, "label", seed=0)
    assert keep.all() and note == "training subset: all 20 training images (data.options.max_train 50)"


@pytest.mark.parametrize("domain, writer, group", [("mimic_cxr", real_layouts.mimic_cxr, "subject"),
                                                   ("cbis_ddsm", real_layouts.cbis_ddsm, "patient")])
def test_real_domains_take_the_subset_and_say_so(tmp_path, domain, writer, group):
    root = writer(tmp_path / "root")
    full = load_domain(domain, DataConfig.from_section(root=str(root), image_size=32), str(tmp_path / "c"))
    n_train = len(full.index("train"))
    cut = load_domain(domain, DataConfig.from_section(root=str(root), image_size=32, options={"max_train": 4}),
                      str(tmp_path / "c"))
    assert 2 <= len(cut.index("train")) <= 4 < n_train and full.subset == ""
    assert cut.subset.startswith(f"training subset: {len(cut.index('train'))} of {n_train} training images")
    for split in ("val", "test"):  # evaluation images are untouched
        np.testing.assert_array_equal(cut.image_ids[cut.index(split)], full.image_ids[full.index(split)])
    rows = np.flatnonzero(np.isin(full.image_ids, cut.image_ids))
    np.testing.assert_array_equal(np.asarray(cut.images), np.asarray(full.images[rows]))  # same rows of the cache
