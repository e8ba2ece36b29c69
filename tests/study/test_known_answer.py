"""The designs against a planted response (``study.known_answer``): only temperature and alpha matter."""
import warnings

from study.known_answer import MATTER, SPACE, compare, true_shares


def test_truth_of_the_stand_in():
    shares = true_shares(50_000)
    assert abs(shares["temperature"] - 0.66) < 0.02 and abs(shares["alpha"] - 0.34) < 0.02
    assert all(shares[d] == 0.0 for d in SPACE if d not in MATTER)


def test_sensitivity_ranks_the_two_planted_dimensions_first_and_apart():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare(budget=64, replicates=5, seed=0)
    rows = {r["dimension"]: r for r in result["sensitivity"]}
    ranked = sorted(rows, key=lambda d: -rows[d]["importance"])
    assert ranked[:2] == ["temperature", "alpha"]
    rest = [rows[d]["high"] for d in SPACE if d not in MATTER]
    assert rows["alpha"]["low"] > max(rest) and rows["temperature"]["low"] > rows["alpha"]["high"]
    # the same budget spent optimising: the sampler crowds where the gain is high, and alpha's share
    # (0.34 in truth) comes out smaller than under the sensitivity design
    opt = {r["dimension"]: r for r in result["optimize"]}
    assert opt["alpha"]["importance"] < rows["alpha"]["importance"]
