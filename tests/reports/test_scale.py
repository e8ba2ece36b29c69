"""A report of a 1,000-trial study (written by the simulator, no training) stays a sane size.
(Its build time is measured in bench/store_scale.py, not here.)"""
import duckdb

from reports import build_report
from study.gain_tables import refresh_gains
from study.simulate import simulate_study
from study.store import Store


def test_report_of_1000_trials_stays_under_20_mb(tmp_path):
    db = str(tmp_path / "big.duckdb")
    info = simulate_study(db, trials=1000, images=60, methods=("rollout", "grad_rollout", "attnlrp"),
                          metrics=("pointing_game", "relevance_mass"))
    assert info["rows"] == 1001 * 5 * 2 * 60  # trials + baseline, 3 methods + 2 chance maps, 2 metrics
    store = Store(db)
    assert refresh_gains(store, "simulated", n_boot=200) == 1000 * 3 * 2
    store.close()
    out = tmp_path / "big.html"
    build_report(db, ["simulated"], str(out))
    assert out.stat().st_size < 20e6
    con = duckdb.connect(db, read_only=True)
    assert con.execute(
        "SELECT count(*) FROM gains WHERE model_ci_low <= gain AND gain <= model_ci_high").fetchone()[0] == 6000
    con.close()
