"""Teachers at MIMIC-CXR's size: a forecast before long fits, frozen embeddings computed once and kept on disk."""
import numpy as np
import pytest

from mmpkd_core.data import DataConfig
from mmpkd_core.data.base import DomainData
from mmpkd_core.teachers import TEACHERS, teacher_outputs
from mmpkd_core.teachers import text as text_teachers


def reports(n_train: int, n_val: int, n_test: int) -> DomainData:
    n = n_train + n_val + n_test
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    zeros = np.zeros(n, np.int64)
    return DomainData("cxr", "text", np.zeros((n, 1, 1, 1), np.uint8), zeros, zeros, np.zeros((n, 1, 1), bool), split,
                      np.arange(n).astype(str), text=["The lungs are clear."] * n)


def test_bert_scratch_says_how_long_cross_fitting_takes_and_what_to_choose(monkeypatch):
    bert = TEACHERS.get("bert_scratch")
    monkeypatch.setattr(bert, "step_seconds", classmethod(lambda cls, texts: 0.01))
    # 5 x 10 epochs x 6,250 batches of training, and 6 fits x (10 x 1,000 + 202,000) / 32 / 3 batches of evaluation:
    # 325,750 batches x 10 ms = 3,257.5 s
    assert bert.forecast(reports(200_000, 1000, 1000), {}) == (
        "6 fits (cross-fitting, 5 folds) of 10 epochs on 200,000 training reports will take about 54 min here "
        "(10.0 ms a batch of 32); minilm embeds each report once and refits only a linear head: 'teacher: minilm' "
        "(or hf_encoder), or take a subset with data.options.max_train")
    assert bert.forecast(reports(2_000, 500, 500), {}) is None  # quick: nothing measured, nothing said


def test_the_forecast_is_said_before_the_fit(monkeypatch, tmp_path, capsys):
    mlp = TEACHERS.get("mlp")
    monkeypatch.setattr(mlp, "forecast", classmethod(lambda cls, data, options: f"{len(data.index('train'))} rows"))
    teacher_outputs("mlp", "synthetic_ddsm", DataConfig(n_train=60, n_val=20, n_test=20, image_size=16), 0,
                    str(tmp_path))
    assert "teacher mlp (seed 0): 60 rows\n" in capsys.readouterr().err


def test_frozen_embeddings_are_computed_once_and_kept_on_disk(monkeypatch, tmp_path):
    texts = ["Focal consolidation in the right lower lobe.", "The lungs are clear.", "No acute process."]
    path = text_teachers.minilm_path()
    monkeypatch.setattr(text_teachers, "_EMBEDDINGS", {})  # another test may have encoded these texts in this process
    first = text_teachers.encode_texts(path, texts, max_len=128, pooling="mean", batch_size=2, cache_dir=tmp_path)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1
    monkeypatch.setattr(text_teachers, "_EMBEDDINGS", {})  # a new process
    monkeypatch.setattr(text_teachers, "_encoder", lambda p: pytest.fail("the encoder ran again"))
    again = text_teachers.encode_texts(path, texts, max_len=128, pooling="mean", batch_size=2, cache_dir=tmp_path)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
