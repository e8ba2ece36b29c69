"""A change of what a trial computes cannot land silently: the golden trial's numbers are pinned
together with the science version (``tests/golden_trial.py``; regenerate with
``.venv/bin/python tests/golden_trial.py --write`` in the change that bumps the version).

Tolerances, measured on this trial (AMD EPYC, AVX-512; torch reports its capability): the epoch's
losses were identical to the last digit under the default MKL path, MKL_CBWR=COMPATIBLE and
MKL_CBWR=AVX2; validation AUROC moved by 6.4e-4 under COMPATIBLE (near-tied logits after one epoch
swap ranks), relevance mass by 5e-10, pixel AUROC by 1e-6. Any change to training, teachers, data,
attention or metrics moves these numbers by far more than the tolerances below."""
import json

import pytest

from golden_trial import FIXTURE, measure
from mmpkd_core.version import SCIENCE_VERSION

REL_LOSS = 1e-4  # losses: relative
ABS = {"val_auroc": 5e-3, "val_objective": 1e-4, "pixel_auroc": 1e-3, "relevance_mass": 1e-4}


@pytest.mark.trains
def test_the_golden_trial_matches_its_science_version():
    fixture = json.loads(FIXTURE.read_text())
    assert fixture["science_version"] == SCIENCE_VERSION, (
        f"SCIENCE_VERSION is {SCIENCE_VERSION} but the golden trial was recorded under {fixture['science_version']}: "
        "regenerate it with '.venv/bin/python tests/golden_trial.py --write'")
    got = measure()
    for k, want in fixture["epoch"].items():
        tol = dict(rel=REL_LOSS) if k in ("loss", "ce", "kd", "feat") else dict(abs=ABS[k])
        assert got["epoch"][k] == pytest.approx(want, **tol), (
            f"epoch 1 {k}: {got['epoch'][k]} against {want} recorded under science version {SCIENCE_VERSION}. If this "
            "change alters what a trial computes, bump SCIENCE_VERSION (mmpkd_core/version.py) and regenerate the "
            "fixture; if not, find what moved it")
    for k, want in fixture["test_scores"].items():
        assert got["test_scores"][k] == pytest.approx(want, abs=ABS[k.split("|")[1]]), k
