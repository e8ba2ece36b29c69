import numpy as np
import pytest

from mmpkd_core.data import DOMAINS, DataConfig, load_domain
from mmpkd_core.teachers import FIT_COUNT, TEACHERS, teacher_outputs

CFG = DataConfig(n_train=300, n_val=80, n_test=80, image_size=32, seed=0)


PRIVILEGED = [t for t in TEACHERS.names()  # hf_encoder needs a model folder: tests/mmpkd_core/test_pretrained.py
              if TEACHERS.get(t).modality != "any" and TEACHERS.get(t).reference is None and t != "hf_encoder"]


def domain_for(teacher: str) -> str:
    return next(d for d in DOMAINS.names()
                if not DOMAINS.get(d).is_real and DOMAINS.get(d).modality == TEACHERS.get(teacher).modality)


@pytest.mark.trains
@pytest.mark.parametrize("name", PRIVILEGED)
def test_teacher_reads_its_modality_well_and_is_fitted_once(name, cache_dir):
    domain = domain_for(name)
    before = FIT_COUNT["fitted"]
    out = teacher_outputs(name, domain, CFG, seed=0, cache_dir=cache_dir)
    n = CFG.n_train + CFG.n_val + CFG.n_test
    assert out.logits.shape == (n, 2) and out.embedding.shape[0] == n
    assert np.isfinite(out.logits).all() and np.isfinite(out.embedding).all()
    # the privileged modality states the truth: the teacher must read it well on unseen cases. Measured (issue 13):
    # 1.0 for all four teachers at seed 0 under default, MKL_CBWR=COMPATIBLE, MKL_CBWR=AVX2 and ONEDNN_MAX_CPU_ISA=AVX2;
    # lowest 0.994 over data and teacher seeds 1 and 2
    assert out.metrics["test_auroc"] > 0.85
    again = teacher_outputs(name, domain, CFG, seed=0, cache_dir=cache_dir)
    assert FIT_COUNT["fitted"] == before + 1
    np.testing.assert_array_equal(out.logits, again.logits)


@pytest.mark.trains
def test_cross_fitting_folds_ask_lightgbm_for_its_logits_only(cache_dir, monkeypatch):
    """Each fold's teacher gives the held-out logits that its full ``predict`` gives, without TreeSHAP's
    contributions (the embedding, unused for a fold): 5 of the 6 fits' contributions were most of the fit."""
    from dataclasses import replace

    import lightgbm as lgb

    from mmpkd_core.teachers.base import fit_predict, out_of_fold_logits

    cls, data = TEACHERS.get("lightgbm"), load_domain("synthetic_ddsm", CFG, cache_dir)
    asked = []
    predict = lgb.LGBMClassifier.predict

    def spy(self, X, **kwargs):
        asked.append("contributions" if kwargs.get("pred_contrib") else "raw" if kwargs.get("raw_score") else "?")
        return predict(self, X, **kwargs)

    monkeypatch.setattr(lgb.LGBMClassifier, "predict", spy)
    held_out = out_of_fold_logits(cls, data, seed=0)
    assert asked == ["raw"] * cls.folds

    tr = data.index("train")  # the same folds, each fold's logits from the teacher's whole predict
    order = np.random.default_rng(0).permutation(len(tr))
    expected = np.zeros_like(held_out)
    for fold in np.array_split(order, cls.folds):
        split = data.split.copy()
        split[tr[fold]] = "heldout"
        expected[fold] = fit_predict(cls, replace(data, split=split), 0)[0][tr[fold]]
    np.testing.assert_array_equal(held_out, expected)
    assert held_out[:, 0].tolist() == [0.0] * len(tr) and np.abs(held_out[:, 1]).min() > 0


@pytest.mark.trains
def test_text_teacher_sees_through_label_noise(cache_dir):
    """Trained on 30% wrong labels, the report teacher still ranks the true finding well."""
    cfg = DataConfig(n_train=300, n_val=80, n_test=80, image_size=32, seed=2, label_noise=0.3)
    out = teacher_outputs("bert_scratch", "synthetic_cxr", cfg, seed=0, cache_dir=cache_dir)
    d = load_domain("synthetic_cxr", cfg, cache_dir)
    tr = d.index("train")
    wrong = d.labels[tr] != d.true_labels[tr]
    pred = (out.logits[tr, 1] > out.logits[tr, 0]).astype(int)
    assert (pred[wrong] == d.true_labels[tr][wrong]).mean() > 0.6  # it disagrees with the wrong labels (measured: 1.0)


def test_teacher_for_the_wrong_modality_is_refused(cache_dir):
    with pytest.raises(ValueError, match="reads text"):
        teacher_outputs("bert_scratch", "synthetic_ddsm", CFG, seed=0, cache_dir=cache_dir)


def test_label_smoothing_control_reads_the_training_labels_only(cache_dir):
    cfg = DataConfig(n_train=100, n_val=30, n_test=30, image_size=32, seed=4, label_noise=0.2)
    out = teacher_outputs("label_smoothing", "synthetic_cxr", cfg, seed=0, cache_dir=cache_dir)
    d = load_domain("synthetic_cxr", cfg, cache_dir)
    tr = d.index("train")
    p = np.exp(out.logits[tr])
    np.testing.assert_allclose(p[np.arange(len(tr)), d.labels[tr]], 0.95, rtol=1e-6)  # noisy labels, as given
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.trains
def test_image_self_control_sees_only_the_image(cache_dir):
    cfg = DataConfig(n_train=300, n_val=60, n_test=60, image_size=32, seed=0)
    out = teacher_outputs("image_self", "synthetic_ddsm", cfg, seed=0, cache_dir=cache_dir)
    assert out.logits.shape == (420, 2) and out.embedding.shape == (420, 64)
    assert np.isfinite(out.logits).all() and np.isfinite(out.embedding).all()
    assert set(out.metrics) == {"fit_seconds", "val_auroc", "test_auroc"}


def test_matched_targets_carry_the_teachers_confidence_on_the_given_label():
    import torch

    from mmpkd_core.teachers.controls import matched_targets

    ref = np.array([[2.0, -1.0], [0.5, 1.0], [0.0, 0.0], [-3.0, 1.0]], dtype=np.float32)
    labels = np.array([1, 1, 0, 0])
    logits, emb = matched_targets(ref, labels)
    np.testing.assert_array_equal(logits, [[0, 3], [0, 0.5], [0, 0], [4, 0]])
    np.testing.assert_array_equal(emb, np.eye(2)[labels])
    for T in (1.0, 4.0):  # equal confidence at every temperature; the class is the label's, not the teacher's
        conf = lambda z: torch.softmax(torch.from_numpy(z) / T, 1).max(1).values  # noqa: E731
        torch.testing.assert_close(conf(logits), conf(ref))
    assert (logits.argmax(1) == labels).all()


@pytest.mark.trains
def test_matched_control_is_built_from_its_reference_and_fits_its_modality(cache_dir):
    cfg = DataConfig(n_train=100, n_val=30, n_test=30, image_size=32, seed=4, label_noise=0.2)
    ref = teacher_outputs("lightgbm", "synthetic_ddsm", cfg, seed=0, cache_dir=cache_dir)
    before = FIT_COUNT["fitted"]
    out = teacher_outputs("matched_lightgbm", "synthetic_ddsm", cfg, seed=0, cache_dir=cache_dir)
    assert FIT_COUNT["fitted"] == before + 1  # the reference came from the cache
    d = load_domain("synthetic_ddsm", cfg, cache_dir)
    np.testing.assert_allclose(np.abs(out.logits[:, 1] - out.logits[:, 0]), np.abs(ref.logits[:, 1] - ref.logits[:, 0]),
                               rtol=1e-6)
    assert TEACHERS.get("matched_bert_scratch").modality == "text"
    with pytest.raises(ValueError, match="reads text"):
        teacher_outputs("matched_bert_scratch", "synthetic_ddsm", cfg, seed=0, cache_dir=cache_dir)
    sure = out.logits[:, 0] != out.logits[:, 1]
    assert sure.mean() > 0.9 and (out.logits[sure].argmax(1) == d.labels[sure]).all()  # confidence on the given label


@pytest.mark.parametrize("name", [t for t in TEACHERS.names()
                                  if TEACHERS.get(t).modality != "any" and TEACHERS.get(t).reference is None])
def test_every_privileged_teacher_has_its_matched_control(name):
    control = TEACHERS.get(f"matched_{name}")
    assert control.reference == name and control.reads_labels and control.modality == TEACHERS.get(name).modality
    assert TEACHERS.get(name).reference is None and not TEACHERS.get(name).reads_labels


def test_a_teacher_registered_later_gets_its_control_from_register_controls():
    from mmpkd_core.teachers.controls import register_controls
    from mmpkd_core.teachers.tabular import MLPTeacher

    TEACHERS.register("late_mlp")(type("LateMLP", (MLPTeacher,), {}))
    try:
        assert register_controls() == ["matched_late_mlp"]
        assert TEACHERS.get("matched_late_mlp").reference == "late_mlp"
        assert register_controls() == []  # once only
    finally:  # the registry is process-wide: leave it as it was
        for n in ("late_mlp", "matched_late_mlp"):
            TEACHERS._items.pop(n, None)
