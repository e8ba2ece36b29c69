"""The driver's preparation: teachers that fit in threads run beside the others, with the outputs of fits
made one after the other, and their lines in the spec's order."""
import numpy as np
import pytest

from mmpkd_core.data import DataConfig
from mmpkd_core.teachers import FIT_COUNT, TEACHERS, teacher_outputs
from study.errors import StudyError


def tiny_spec(teachers: list[str], seeds: list[int]):
    from study.load import spec_from_dict

    return spec_from_dict({"name": "prep", "domain": "synthetic_ddsm", "seeds": seeds,
                           "data": {"n_train": 120, "n_val": 40, "n_test": 40, "image_size": 32, "seed": 3},
                           "search_space": {"teacher": {"type": "categorical", "choices": teachers}}})


def test_fits_in_threads_give_the_outputs_of_fits_one_after_the_other(tmp_path):
    cfg = DataConfig(n_train=150, n_val=50, n_test=50, image_size=32, seed=5)
    before = FIT_COUNT["fitted"]
    in_turn = teacher_outputs("lightgbm", "synthetic_ddsm", cfg, seed=1, cache_dir=tmp_path / "a", threads=1)
    beside = teacher_outputs("lightgbm", "synthetic_ddsm", cfg, seed=1, cache_dir=tmp_path / "b", threads=3)
    assert FIT_COUNT["fitted"] == before + 2  # two caches: fitted twice
    assert TEACHERS.get("lightgbm").fits_in_threads and not TEACHERS.get("mlp").fits_in_threads
    np.testing.assert_array_equal(in_turn.logits, beside.logits)  # out-of-fold training logits included
    np.testing.assert_array_equal(in_turn.embedding, beside.embedding)
    assert in_turn.metrics["test_auroc"] == beside.metrics["test_auroc"]


def test_prepare_fits_every_teacher_and_seed_once_and_says_them_in_order(tmp_path):
    from study.prepare import prepare
    from study.trial_config import base_config

    spec = tiny_spec(["mlp", "lightgbm"], [0, 1])
    base = base_config(spec, str(tmp_path))
    lines: list[str] = []
    before = FIT_COUNT["fitted"]
    prepare(spec, base, str(tmp_path), 2, lines.append)
    assert FIT_COUNT["fitted"] == before + 4
    said = [line.split(":")[0] for line in lines if line.startswith("teacher ")]
    assert said == ["teacher mlp (seed 0)", "teacher mlp (seed 1)", "teacher lightgbm (seed 0)",
                    "teacher lightgbm (seed 1)"]
    for name in ("mlp", "lightgbm"):  # the same outputs as one fit after the other, in a cache of their own
        for seed in (0, 1):
            here = teacher_outputs(name, "synthetic_ddsm", base.data, seed, str(tmp_path))
            alone = teacher_outputs(name, "synthetic_ddsm", base.data, seed, str(tmp_path / "alone"))
            np.testing.assert_array_equal(here.logits, alone.logits)
            np.testing.assert_array_equal(here.embedding, alone.embedding)
    prepare(spec, base, str(tmp_path), 2, lines.append)
    assert FIT_COUNT["fitted"] == before + 4 + 4  # the four 'alone' fits; prepare found its own in the cache


def test_a_matched_control_waits_for_its_reference_fitting_beside_it(tmp_path):
    from study.prepare import prepare
    from study.trial_config import base_config

    spec = tiny_spec(["matched_lightgbm", "lightgbm"], [0])
    base = base_config(spec, str(tmp_path))
    lines: list[str] = []
    before = FIT_COUNT["fitted"]
    prepare(spec, base, str(tmp_path), 2, lines.append)
    assert FIT_COUNT["fitted"] == before + 2  # lightgbm once (not again for its control), the control once
    assert [line.split(":")[0] for line in lines if line.startswith("teacher ")] == [
        "teacher matched_lightgbm (seed 0)", "teacher lightgbm (seed 0)"]


def test_a_teacher_that_fails_stops_the_preparation_with_its_error(tmp_path, monkeypatch):
    from study.prepare import prepare
    from study.trial_config import base_config

    spec = tiny_spec(["lightgbm", "mlp"], [0])
    base = base_config(spec, str(tmp_path))

    def broken(self, data):
        raise StudyError("the mlp teacher cannot read this table")

    monkeypatch.setattr(TEACHERS.get("mlp"), "fit", broken)
    lines: list[str] = []
    with pytest.raises(StudyError, match="^the mlp teacher cannot read this table$"):
        prepare(spec, base, str(tmp_path), 2, lines.append)
    cached = sorted(p.name.split("-")[1] for p in (tmp_path / "teachers").glob("*.npz"))
    assert cached == ["lightgbm"]  # the teacher beside it finished; nothing was cached for the failed one
    assert not any(line.startswith("data and teachers ready") for line in lines)
