import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmpkd_core import localization
from mmpkd_core.localization import score, upsample


def mask_at(cells, size=4):
    m = np.zeros((size, size), bool)
    for r, c in cells:
        m[r, c] = True
    return m


def test_pointing_game_hit_miss_and_empty_mask():
    maps = np.zeros((3, 4, 4))
    maps[0, 1, 1] = 5.0  # max inside
    maps[1, 3, 3] = 5.0  # max outside
    maps[2, 1, 1] = 5.0
    masks = np.stack([mask_at([(1, 1), (1, 2)]), mask_at([(1, 1)]), mask_at([])])
    out = score("pointing_game", maps, masks)
    assert out[0] == 1.0 and out[1] == 0.0 and np.isnan(out[2])


def test_pointing_game_ties_share_the_credit():
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0] = maps[0, 3, 3] = 1.0  # two tied maxima, one inside: half a hit
    maps[1] = 1.0  # flat map: 16 ties, one inside
    masks = np.stack([mask_at([(0, 0)]), mask_at([(2, 2)])])
    np.testing.assert_allclose(score("pointing_game", maps, masks), [0.5, 1 / 16])


def test_pointing_game_tolerance_in_pixels():
    maps = np.zeros((1, 8, 8))
    maps[0, 0, 0] = 1.0
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 0, 2] = True  # two pixels away
    assert score("pointing_game", maps, masks, tolerance=1)[0] == 0.0
    assert score("pointing_game", maps, masks, tolerance=2)[0] == 1.0


def test_relevance_mass_golden_and_negative_values_clipped():
    maps = np.array([[[1.0, 3.0], [-4.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = np.array([[[False, True], [True, False]], [[True, False], [False, False]]])
    out = score("relevance_mass", maps, masks)
    assert out[0] == pytest.approx(3 / 4)  # -4 is clipped: 3 inside of 1 + 3 positive
    assert out[1] == 0.0  # no positive mass: nothing points into the mask


@pytest.mark.parametrize("metric", localization.available())
def test_every_metric_is_batch_size_invariant_and_in_unit_range(metric):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(7, 12, 12))
    masks = rng.random((7, 12, 12)) < 0.2
    masks[3] = False
    full = score(metric, maps, masks)
    parts = np.concatenate([score(metric, maps[i : i + 2], masks[i : i + 2]) for i in range(0, 7, 2)])
    np.testing.assert_array_equal(full, parts)
    assert np.isnan(full[3])
    ok = full[~np.isnan(full)]
    assert (ok >= 0).all()
    if metric != "cnr":  # the only unbounded metric
        assert (ok <= 1).all()


def test_upsample_is_bilinear_with_token_values_at_patch_centres():
    grid = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    up = upsample(grid, (4, 4))
    assert up.shape == (1, 4, 4)
    assert up[0, 0, 0] == pytest.approx(0.0) and up[0, 3, 3] == pytest.approx(3.0)
    assert up[0, 1, 1] == pytest.approx(0.75 * 0.75 * 0 + 0.75 * 0.25 * 1 + 0.25 * 0.75 * 2 + 0.25 * 0.25 * 3)


def test_unknown_metric_names_the_nearest():
    with pytest.raises(KeyError, match="Did you mean 'pointing_game'"):
        score("pointing_gme", np.zeros((1, 2, 2)), np.zeros((1, 2, 2), bool))


FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "localization.json").read_text())


def golden_cases():
    for case in FIXTURE["cases"]:
        for metric, expected in case["expected"].items():
            params = {**FIXTURE["params"], **case.get("params", {})}.get(metric, {})
            yield pytest.param(case, metric, expected, params, id=f"{case['name']}-{metric}")


def test_fixture_covers_every_registered_metric():
    for case in FIXTURE["cases"]:
        assert set(case["expected"]) == set(localization.available()), case["name"]


@pytest.mark.parametrize("case,metric,expected,params", list(golden_cases()))
def test_golden_values_on_hand_built_maps(case, metric, expected, params):
    maps = np.array([case["map"]], dtype=float)
    masks = np.array([case["mask"]], dtype=bool)
    got = score(metric, maps, masks, **params)[0]
    if expected is None:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def test_pixel_ranking_matches_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    maps = np.round(rng.random((16, 8, 8)) * 4) / 4  # many tied values
    masks = rng.random((16, 8, 8)) < 0.3
    auroc = [roc_auc_score(masks[i].ravel(), maps[i].ravel()) for i in range(16)]
    ap = [average_precision_score(masks[i].ravel(), maps[i].ravel()) for i in range(16)]
    np.testing.assert_allclose(score("pixel_auroc", maps, masks), auroc, atol=1e-12)
    np.testing.assert_allclose(score("pixel_auprc", maps, masks), ap, atol=1e-12)
