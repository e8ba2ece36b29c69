"""The golden trial: a tiny deterministic trial whose numbers are pinned with the science version.

    .venv/bin/python tests/golden_trial.py            # print this machine's numbers beside the fixture
    .venv/bin/python tests/golden_trial.py --write    # regenerate tests/fixtures/golden_trial.json

Regenerate it in the same change that bumps ``mmpkd_core.version.SCIENCE_VERSION``: a change of what a
trial computes must bump the version (``tests/mmpkd_core/test_golden_trial.py`` fails otherwise).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "golden_trial.json"
KEYS = ("loss", "ce", "kd", "feat", "val_auroc", "val_objective")


def golden_config(cache_dir: str):
    from mmpkd_core import DataConfig, StudentConfig, TrialConfig

    return TrialConfig(domain="synthetic_ddsm",
                       data=DataConfig(n_train=200, n_val=60, n_test=40, image_size=32, seed=0),
                       student=StudentConfig(patch_size=8, embed_dim=32, depth=2, num_heads=2, epochs=1, batch_size=32),
                       teacher="mlp", temperature=2.0, alpha=0.5, beta=0.5, attention_method="rollout", seed=0,
                       eval_methods=("raw_cls", "rollout"), eval_metrics=("relevance_mass", "pixel_auroc"),
                       objective_metric="relevance_mass", cache_dir=cache_dir, threads=1)


def measure() -> dict:
    """The golden trial's epoch row and its mean test scores, run in a fresh cache."""
    from mmpkd_core import run_trial
    from mmpkd_core.version import SCIENCE_VERSION

    with tempfile.TemporaryDirectory() as cache:
        result = run_trial(golden_config(cache))
    epoch = result.epochs[0]
    scores = {f"{m}|{k}": float(sum(v for v in arr if v == v) / sum(1 for v in arr if v == v))
              for (m, k), arr in result.scores.items() if m in ("raw_cls", "rollout")}
    return {"science_version": SCIENCE_VERSION, "epoch": {k: float(epoch[k]) for k in KEYS}, "test_scores": scores}


if __name__ == "__main__":
    here = Path(__file__).resolve().parent  # tests/mmpkd_core would shadow the package when run as a script
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here] + [str(here.parent)]
    got = measure()
    if "--write" in sys.argv:
        FIXTURE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"wrote {FIXTURE}")
    else:
        print(json.dumps({"this machine": got,
                          "fixture": json.loads(FIXTURE.read_text()) if FIXTURE.exists() else None},
                         indent=1, sort_keys=True))
