import numpy as np
import pytest
from scipy import stats as sps

from study.gains import two_level_rows
from study.stats import bootstrap_ci, holm, mcnemar_exact_p, paired_test, wilcoxon_p

RNG = np.random.default_rng(7)
D = RNG.normal(0.1, 0.3, 60)


def test_bootstrap_interval_matches_scipys_percentile_bootstrap():
    lo, hi = bootstrap_ci(D, n_boot=4000, seed=1)
    ref = sps.bootstrap((D,), np.mean, n_resamples=4000, method="percentile", random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)
    assert lo < D.mean() < hi


def test_two_level_interval_is_wider_when_groups_disagree():
    same = np.stack([D[:20], D[20:40], D[40:]])  # (trials, images)
    apart = np.stack([D[:20] - 0.5, D[20:40], D[40:] + 0.5])
    w_same = np.diff(two_level_rows(same, n_boot=2000))[0]
    w_apart = np.diff(two_level_rows(apart, n_boot=2000))[0]
    assert w_apart > 2 * w_same
    one = two_level_rows(D[None, :], n_boot=4000, seed=1)  # a single trial: the image bootstrap
    ref = sps.bootstrap((D,), np.mean, n_resamples=4000, method="percentile", random_state=1).confidence_interval
    assert one[0] == pytest.approx(ref.low, abs=0.012) and one[1] == pytest.approx(ref.high, abs=0.012)


def test_wilcoxon_matches_scipy_and_all_zero_is_one():
    assert wilcoxon_p(D) == pytest.approx(sps.wilcoxon(D).pvalue, rel=1e-12)
    assert wilcoxon_p(np.zeros(5)) == 1.0


def test_mcnemar_exact_on_discordant_pairs():
    trial = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    base = np.array([0, 0, 0, 0, 0, 1, 1, 0, 1, 0], bool)
    # 5 gained, 1 lost: two-sided exact binomial p of 5 of 6 at 0.5 = 2 * 7/64
    assert mcnemar_exact_p(trial, base) == pytest.approx(14 / 64)
    assert mcnemar_exact_p(base, base) == 1.0


def test_pointing_game_uses_mcnemar_and_continuous_metrics_wilcoxon():
    t, b = np.array([1.0, 1.0, 0.0, 0.25]), np.array([0.0, 1.0, 0.0, 1.0])
    assert paired_test("pointing_game", t, b)[1] == "mcnemar"
    assert paired_test("relevance_mass", t, b)[1] == "wilcoxon"


def test_holm_matches_the_textbook_example():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([np.nan, 0.01])[0])


def test_column_versions_agree_with_the_single_ones():
    from study.stats import bootstrap_ci_columns, mcnemar_p_columns, wilcoxon_p_columns

    rng = np.random.default_rng(3)
    d = rng.normal(0.05, 0.2, (80, 5))
    d[3, 1] = np.nan
    lo, hi = bootstrap_ci_columns(d, n_boot=4000, seed=2)
    for j in range(5):
        single = bootstrap_ci(d[:, j], n_boot=4000, seed=9)
        assert lo[j] == pytest.approx(single[0], abs=0.012) and hi[j] == pytest.approx(single[1], abs=0.012)
    np.testing.assert_allclose(wilcoxon_p_columns(d), [wilcoxon_p(d[:, j]) for j in range(5)])
    t, b = rng.random((40, 6)) < 0.6, rng.random((40, 6)) < 0.4
    valid = np.ones_like(t)
    np.testing.assert_allclose(mcnemar_p_columns(t, b, valid), [mcnemar_exact_p(t[:, j], b[:, j]) for j in range(6)])
