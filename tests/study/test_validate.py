"""The engine's known-answer check, fast version: tiny sizes, 2 seeds, the local executor."""
import os
import subprocess
import sys

import duckdb
import numpy as np
import pytest

from study.validate import contrast, load, verdict


def test_verdicts():
    assert verdict("planted", 0.01, 0.2) == "found" and verdict("planted", -0.01, 0.2) == "NOT FOUND"
    assert verdict("null", -0.1, 0.1) == "no effect (as expected)" and verdict("null", 0.02, 0.1) == "FALSE POSITIVE"


def test_validation_specs_load_and_differ_only_in_the_knob():
    planted, null = load("planted").model_dump(), load("null").model_dump()
    assert planted["data"].pop("label_noise") == 0.4 and null["data"].pop("label_noise") == 0.0
    planted.pop("name"), null.pop("name")
    assert planted == null


@pytest.mark.trains
@pytest.mark.slow
@pytest.mark.validation  # about 4 minutes: `make validate`, not `make test`
def test_planted_effect_points_the_right_way_and_pairs_images(tmp_path, cache_dir):
    out = subprocess.run([sys.executable, "-m", "study.cli", "validate-engine", "--quick", "--db", "v.duckdb",
                          "--format", "csv"], cwd=tmp_path, env=dict(os.environ, MMPKD_CACHE=cache_dir),
                         capture_output=True, text=True, timeout=2400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    con = duckdb.connect(str(tmp_path / "v.duckdb"), read_only=True)
    planted = contrast(con, "validation-planted-quick")
    null = contrast(con, "validation-null-quick")
    con.close()
    # the report teacher knows the truth behind 40% wrong labels: its students localize better
    # (pointing game, where the planted effect lives: +0.47 rollout and +0.53 grad_rollout measured at these sizes,
    # +0.59 / +0.41 at full size; relevance mass moves little at 2 seeds and -0.015 was measured for rollout)
    pg = planted[planted["metric"] == "pointing_game"]
    assert len(pg) == 2 and (pg["privileged_minus_control"] > 0.15).all(), planted
    # paired: both teachers' students scored on the same 2 seeds x the same test images with a finding
    assert (planted["seeds"] == 2).all() and (null["seeds"] == 2).all()
    assert planted["images"].nunique() == 1 and null["images"].nunique() == 1
    assert "null intervals excluding zero, privileged - control" in out.stdout


def test_seed_halves_are_paired_by_image(tmp_path):
    """The A/A check: seeds 0-1 minus seeds 2-3 of the privileged teacher, image by image."""
    from conftest import EPOCHS, config, result

    from study.store import Store
    from study.validate import seed_split_contrast

    store = Store(tmp_path / "v.duckdb")
    store.create_study("aa", "synthetic_cxr", "{}", "h")
    rng = np.random.default_rng(0)
    base = {f"rollout|{m}": list(rng.random(30)) for m in ("pointing_game", "relevance_mass")}
    for seed in range(4):
        shift = 0.1 if seed >= 2 else 0.0
        s = {k: [x + shift for x in v] for k, v in base.items()}
        tid = f"t{seed}"
        store.trial_started("aa", tid, 0, config("bert_scratch", 0.5, seed), {"teacher": "bert_scratch"}, f"h{seed}",
                            "b0")
        store.trial_finished("aa", tid, "completed", EPOCHS, result(seed, s))
    store.close()
    con = duckdb.connect(str(tmp_path / "v.duckdb"), read_only=True)
    t = seed_split_contrast(con, "aa")
    con.close()
    assert (list(t["metric"]) == ["pointing_game", "relevance_mass"] and (t["seeds"] == 4).all()
            and (t["images"] == 30).all())
    np.testing.assert_allclose(t["privileged_minus_control"], -0.1, atol=1e-12)
    np.testing.assert_allclose(t[["ci_low", "ci_high"]].to_numpy(), -0.1, atol=1e-12)
