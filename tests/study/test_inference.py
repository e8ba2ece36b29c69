"""Seed-level inference: golden values on hand-built gains, and the ablation rows built from them."""
import duckdb
import numpy as np
import pytest
from scipy import stats as sps

from conftest import EPOCHS, IMAGES, config, result
from study.inference import (UNIT_PAIRED_SEED, UNIT_SEED, infer, p_floor, reachable, sign_flip_p, t_intervals,
                             two_way, welch)

T975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 df


def test_t_interval_on_three_seeds():
    mean, lo, hi = t_intervals(np.array([[0.1, 0.2, 0.3]]))
    half = T975_2 * 0.1 / np.sqrt(3)  # sd 0.1 over 3 seeds
    assert mean[0] == pytest.approx(0.2) and lo[0] == pytest.approx(0.2 - half) and hi[0] == pytest.approx(0.2 + half)
    mean, lo, hi = t_intervals(np.array([[0.4, 0.4, 0.4]]))  # no spread: a zero-width interval at the mean
    assert lo[0] == hi[0] == mean[0] == pytest.approx(0.4)


def test_exact_sign_flip_p_values():
    # all 8 sign patterns of (0.1, 0.2, 0.3): only the observed one reaches a mean of 0.2 -> 2 x 1/8
    np.testing.assert_allclose(sign_flip_p(np.array([[0.1, 0.2, 0.3], [0.1, -0.2, 0.3], [0, 0, 0]])),
                               [0.25, 0.75, 1.0])
    # 6 seeds all positive: 2/64, the first n whose floor is below 0.05
    assert sign_flip_p(np.array([[0.1, 0.2, 0.3, 0.15, 0.05, 0.12]]))[0] == pytest.approx(2 / 64)
    np.testing.assert_allclose(p_floor([1, 2, 3, 5, 10]), [1.0, 0.5, 0.25, 0.0625, 2 / 1024])
    # in a Holm family of 4, a row needs 2/2^n <= 0.05/4: 8 units and up
    assert list(reachable([3, 6, 7, 8], 4)) == [False, False, False, True]
    assert list(reachable([5, 6], 1)) == [False, True]


def test_infer_batches_lists_of_different_lengths():
    est = infer([np.array([0.1, 0.2, 0.3]), np.array([0.5]), np.array([1.0, 2.0, 3.0, 4.0, 5.0])])
    assert list(est["n"]) == [3, 1, 5]
    assert np.isnan(est["ci_low"][1]) and np.isnan(est["p_value"][1]) and est["mean"][1] == 0.5
    ref = sps.ttest_1samp([1.0, 2.0, 3.0, 4.0, 5.0], 0).confidence_interval(0.95)
    assert est["ci_low"][2] == pytest.approx(ref.low) and est["ci_high"][2] == pytest.approx(ref.high)
    assert est["p_value"][2] == pytest.approx(2 / 32)


def test_two_way_on_a_hand_computed_table():
    # recipe means 1.5, 4.5; seed means 2, 4; residuals +-0.5: V = 4.5/2 + 2/2 - 1/1/4 = 3.0
    mean, lo, hi, p, df = two_way(np.array([[1.0, 2.0], [3.0, 6.0]]))
    assert mean == 3.0 and df == pytest.approx(9 / (2.25 ** 2 + 1 + 0.25 ** 2))
    half = sps.t.ppf(0.975, df) * np.sqrt(3.0)
    assert lo == pytest.approx(3.0 - half) and hi == pytest.approx(3.0 + half)
    assert p == pytest.approx(2 * sps.t.sf(3.0 / np.sqrt(3.0), df))


def test_welch_and_its_degenerate_case():
    lo, hi, p = welch(np.array([0.2, 0.4, 0.3]), np.array([0.0, 0.1]))
    ref = sps.ttest_ind([0.2, 0.4, 0.3], [0.0, 0.1], equal_var=False)
    assert (lo, hi, p) == pytest.approx((*ref.confidence_interval(0.95), ref.pvalue))
    assert welch(np.array([0.3, 0.3]), np.array([0.1, 0.1])) == pytest.approx((0.2, 0.2, 0.0))


@pytest.fixture()
def seeds_db(tmp_path):
    """One recipe of 'mlp' and one of its control 'matched_mlp', 3 seeds each, every seed with its own
    baseline. Per seed, every image gains exactly: mlp 0.1, 0.2, 0.3; control 0.0, 0.1, 0.1."""
    from study.gain_tables import refresh_gains
    from study.store import Store

    rng = np.random.default_rng(1)
    store = Store(tmp_path / "s.duckdb")
    store.create_study("seeds", "synthetic_ddsm", '{"objective": {"metric": "relevance_mass"}}', "h")
    for seed in range(3):
        base = {f"{m}|relevance_mass": list(rng.uniform(0.2, 0.6, len(IMAGES))) for m in ("rollout", "uniform")}
        store.trial_started("seeds", f"baseline-b{seed}", None, config("none", 0.0, seed), {}, f"b{seed}", None)
        store.trial_finished("seeds", f"baseline-b{seed}", "completed", [], result(seed, base))
        for number, teacher, shift in ((0, "mlp", [0.1, 0.2, 0.3]), (1, "matched_mlp", [0.0, 0.1, 0.1])):
            s = {k: [x + (shift[seed] if k.startswith("rollout") else 0.0) for x in v] for k, v in base.items()}
            tid = f"{number:04d}.s{seed}"
            store.trial_started("seeds", tid, number, config(teacher, 0.5, seed), {"teacher": teacher},
                                f"h{number}{seed}", f"b{seed}")
            store.trial_finished("seeds", tid, "completed", EPOCHS, result(seed, s))
    refresh_gains(store, "seeds", n_boot=200)
    store.finish_study("seeds", "completed", 1.0)
    store.close()
    return tmp_path / "s.duckdb"


def test_a_recipe_with_seeds_is_inferred_over_its_seeds(seeds_db):
    from study.ablation import ablation

    con = duckdb.connect(str(seeds_db), read_only=True)
    t = ablation(con, ["seeds"], ["teacher", "attention_method"], "relevance_mass")
    stored = con.execute("SELECT unit, n, gain, ci_low, ci_high, p_value, p_floor, reachable FROM recipe_gains "
                         "WHERE number = 0 AND method = 'rollout'").fetchone()
    con.close()
    mlp = t[t["teacher"] == "mlp"].iloc[0]
    half = T975_2 * 0.1 / np.sqrt(3)
    assert (mlp["unit"], mlp["n"], mlp["seeds"], mlp["recipes"]) == (UNIT_SEED, 3, 3, 1)
    assert (mlp["gain"], mlp["ci_low"], mlp["ci_high"]) == pytest.approx((0.2, 0.2 - half, 0.2 + half))
    assert (mlp["p_value"], mlp["p_floor"], mlp["reachable"]) == (pytest.approx(0.25), 0.25, False)
    assert stored[:2] == (UNIT_SEED, 3) and stored[2:] == pytest.approx((0.2, 0.2 - half, 0.2 + half, 0.25, 0.25,
                                                                         False))
    # over its control, paired by seed: differences 0.1, 0.1, 0.2
    d = np.array([0.1, 0.1, 0.2])
    half = T975_2 * d.std(ddof=1) / np.sqrt(3)
    assert mlp["control"] == "matched_mlp" and mlp["over_control_unit"] == UNIT_PAIRED_SEED
    assert (mlp["over_control"], mlp["over_control_low"], mlp["over_control_high"], mlp["over_control_p"]) == \
        pytest.approx((d.mean(), d.mean() - half, d.mean() + half, 0.25))


def test_study_seeds_plans_from_the_seed_spread(seeds_db):
    import subprocess
    import sys

    from statsmodels.stats.power import TTestPower

    from study.power import seed_plan

    con = duckdb.connect(str(seeds_db), read_only=True)
    t = seed_plan(con, "seeds", effect=0.05, metric="relevance_mass")
    con.close()
    row = t[t["method"] == "rollout"].iloc[0]
    # two recipes of 3 seeds: pooled within-recipe spread of (0.1, 0.2, 0.3) and (0.0, 0.1, 0.1); images add nothing
    var = (0.02 + 2 * (0.1 - 0.2 / 3) ** 2 + (0.2 / 3) ** 2) / 4
    ucb = np.sqrt(4 * var / sps.chi2.ppf(0.1, 4))
    assert (row["recipes"], row["df"]) == (2, 4) and row["sd_gain"] == pytest.approx(np.sqrt(var))
    assert row["sd_image"] == pytest.approx(0.0, abs=1e-12) and row["sd_gain_ucb"] == pytest.approx(ucb)
    expected = int(np.ceil(TTestPower().solve_power(effect_size=0.05 / ucb, alpha=0.05, power=0.8)))
    assert row["seeds"] == expected and row["seeds_point"] < row["seeds"]
    out = subprocess.run([sys.executable, "-m", "study.cli", "seeds", "seeds", "--effect", "0.05", "--metric",
                          "relevance_mass", "--format", "csv", "--db", str(seeds_db)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == ("method,metric,recipes,seeds_per_recipe,df,sd_gain,sd_seed,sd_image,"
                                          "sd_gain_ucb,effect,seeds,seeds_point")
    assert out.stdout.splitlines()[1].startswith("rollout,relevance_mass,2,3.0,4,") and f",{expected}," in out.stdout


def test_study_seeds_on_a_one_seed_study_names_the_seeds_key(demo_db):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "study.cli", "seeds", "demo", "--db", str(demo_db)],
                         capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stderr.strip()) == (
        1, "error: study 'demo' ran every recipe with 1 seed; 'study seeds' "
           "needs 2 or more seeds per recipe to estimate the seed variance: "
           "set 'seeds: [0, 1, 2]' in the spec and run it")
    bad = subprocess.run([sys.executable, "-m", "study.cli", "seeds", "demo", "--effect", "0", "--db", str(demo_db)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --effect 0.0: give the smallest gain worth detecting")


def test_seeds_needed_grows_with_the_spread_even_for_large_effects():
    from statsmodels.stats.power import TTestPower

    from study.power import SIGN_FLIP_MIN, seeds_needed

    assert SIGN_FLIP_MIN == 6  # 2/2^6 = 0.031 is the first floor under 0.05
    # statsmodels' noncentral t is NaN at effect sizes this large; the normal approximation takes over
    sizes = [seeds_needed(0.05, sd) for sd in (0.0095, 0.0136, 0.03, 0.07, 0.12)]
    assert sizes == sorted(sizes) and sizes[0] == 3  # 2 seeds: t on 1 df (critical value 12.7) is too weak
    n = seeds_needed(0.05, 0.07)
    power = TTestPower().power(effect_size=0.05 / 0.07, nobs=np.array([n - 1, n]), alpha=0.05)
    assert power[0] < 0.8 <= power[1]  # the smallest n that reaches the power
