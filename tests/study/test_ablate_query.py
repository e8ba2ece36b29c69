"""``study ablate`` and ``study query`` on a database built in the test (no training)."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import scores

from study.ablation import ablation
from study.gains import load_pairs
from study.inference import UNIT_RECIPE_ONE_SEED, UNIT_RECIPE_WELCH
from study.stats import PairingError

def cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, COLUMNS="200"))


def test_ablation_values(demo_db):
    import duckdb

    con = duckdb.connect(str(demo_db), read_only=True)
    t = ablation(con, ["demo"], ["teacher", "attention_method"], "relevance_mass", n_boot=500)
    rows = {(r.teacher, r.attention_method): r for r in t.itertuples()}
    assert set(rows) == {("lightgbm", "raw_cls"), ("lightgbm", "rollout"), ("mlp", "raw_cls"), ("mlp", "rollout")}
    gain = rows[("mlp", "rollout")]
    base_mean = con.execute("SELECT avg(value) FROM localization WHERE trial_id = 'baseline-b0' AND method = 'rollout'"
                            " AND metric = 'relevance_mass'").fetchone()[0]
    expected = con.execute("SELECT avg(value) FROM localization WHERE trial_id IN ('0000', '0001')"
                           " AND method = 'rollout' AND metric = 'relevance_mass'").fetchone()[0] - base_mean
    assert gain.gain == pytest.approx(expected, abs=1e-12)
    # two recipes of one seed, both gaining the same: inferred over recipes, a zero-width interval, and a row
    # that says its baseline's seed variation is not counted and that 2 units cannot reach 0.05 (floor 2/2^2)
    assert gain.unit == UNIT_RECIPE_ONE_SEED and (gain.n, gain.recipes, gain.seeds, gain.images) == (2, 2, 1, 60)
    assert gain.ci_low == pytest.approx(gain.gain) == pytest.approx(gain.ci_high) and gain.ci_low > 0.2
    assert gain.p_value == 0.5 and gain.p_floor == 0.5 and not gain.reachable
    none = rows[("lightgbm", "rollout")]
    assert none.gain == 0.0 and none.ci_low == none.ci_high == 0.0 and none.p_value == 1.0
    assert t["p_holm"].between(0, 1).all()
    assert gain.chance_uniform == pytest.approx(np.mean(scores(np.random.default_rng(0), {})["uniform|relevance_mass"]))
    con.close()


def test_gains_table_written_per_trial(demo_db):
    import duckdb

    con = duckdb.connect(str(demo_db), read_only=True)
    rows = con.execute("SELECT trial_id, method, metric, model_test, round(gain, 6) FROM gains WHERE trial_id = '0000'"
                       " ORDER BY method, metric").fetchall()
    assert [r[:4] for r in rows] == [("0000", "raw_cls", "pointing_game", "mcnemar"),
                                     ("0000", "raw_cls", "relevance_mass", "wilcoxon"),
                                     ("0000", "rollout", "pointing_game", "mcnemar"),
                                     ("0000", "rollout", "relevance_mass", "wilcoxon")]
    assert rows[0][4] == 0.0 and rows[3][4] > 0.2
    con.close()


def test_a_missing_baseline_image_is_an_error(demo_db):
    import duckdb

    con = duckdb.connect(str(demo_db))
    con.execute("DELETE FROM localization WHERE trial_id = 'baseline-b0' AND image_id = 'img03'")
    with pytest.raises(PairingError, match=r"trial demo/0000 \(raw_cls/pointing_game\): trial and baseline hold "
                                           r"different images \(only in trial \['img03'\], only in baseline \[\]"):
        load_pairs(con, ["demo"])
    con.execute("DELETE FROM localization WHERE image_id = 'img03'")
    con.execute("DELETE FROM localization WHERE trial_id = '0001' AND image_id = 'img04'")
    with pytest.raises(PairingError, match=r"demo/0001 .*only in trial \[\], only in baseline \['img04'\]"):
        load_pairs(con, ["demo"])
    con.execute("DELETE FROM localization WHERE trial_id = 'baseline-b0'")
    with pytest.raises(PairingError, match="has no completed baseline with its scores"):
        load_pairs(con, ["demo"])
    con.close()


def test_ablate_cli_csv_and_errors(demo_db):
    out = cli(["ablate", "demo", "--by", "teacher", "--metric", "relevance_mass", "--format", "csv",
               "--db", str(demo_db)], demo_db.parent)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == ("teacher,unit,n,df,recipes,seeds,images,score,baseline,gain,ci_low,ci_high,p_value,p_holm,"
                        "p_floor,reachable,chance_uniform,chance_centre")
    unit = UNIT_RECIPE_ONE_SEED
    assert lines[1].startswith(f"lightgbm,{unit},2,1.0,2,1,120,") and lines[2].startswith(f"mlp,{unit},2,1.0,2,1,120,")
    assert out.stderr.startswith(f"unit of inference: {UNIT_RECIPE_ONE_SEED} (2 rows); ci_low/ci_high: 95% t-interval")
    assert "2 row(s) cannot reach p_holm < 0.05 with their number of units" in out.stderr
    bad = cli(["ablate", "demo", "--by", "teachr", "--db", str(demo_db)], demo_db.parent)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error: unknown factor 'teachr'. Did you mean 'teacher'? Known: study, domain")
    missing = cli(["ablate", "dem0", "--db", str(demo_db)], demo_db.parent)
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: no study 'dem0' in the database. "
                                                               "Did you mean 'demo'? Stored: demo")


def test_query_reads_and_refuses_to_write(demo_db):
    out = cli(["query", "SELECT count(*) AS n FROM trials WHERE NOT is_baseline", "--format", "json",
               "--db", str(demo_db)], demo_db.parent)
    assert out.returncode == 0 and json.loads(out.stdout) == [{"n": 4}]
    write = cli(["query", "DELETE FROM trials", "--db", str(demo_db)], demo_db.parent)
    assert (write.returncode, write.stderr.strip()) == (1, "error: study query is read-only; it does not modify "
                                                           "the database")
    bad = cli(["query", "SELECT nope FROM trials", "--db", str(demo_db)], demo_db.parent)
    assert bad.returncode == 1 and bad.stderr.startswith("error: query failed: Binder Error")


def test_a_privileged_teacher_is_read_against_its_control(demo_db):
    import duckdb

    from conftest import EPOCHS, config, result
    from study.store import Store

    store = Store(demo_db)
    base = {r[0]: r[1] for r in store.con.execute(
        "SELECT method || '|' || metric, list(value ORDER BY image_id) FROM localization "
        "WHERE trial_id = 'baseline-b0' GROUP BY ALL").fetchall()}
    for i in (4, 5):  # the control's students gain +0.1 relevance mass under rollout
        s = {k: list(np.clip(np.array(v) + (0.1 if k == "rollout|relevance_mass" else 0.0), 0, 1))
             for k, v in base.items()}
        store.trial_started("demo", f"{i:04d}", i, config("matched_mlp", 0.5), {"teacher": "matched_mlp"}, f"h{i}",
                            "b0")
        store.trial_finished("demo", f"{i:04d}", "completed", EPOCHS, result(0, s))
    store.close()
    con = duckdb.connect(str(demo_db), read_only=True)
    t = ablation(con, ["demo"], ["teacher", "attention_method"], "relevance_mass", n_boot=500)
    con.close()
    rows = {(r.teacher, r.attention_method): r for r in t.itertuples()}
    mlp, ctl = rows[("mlp", "rollout")], rows[("matched_mlp", "rollout")]
    assert mlp.control == "matched_mlp" and mlp.over_control == pytest.approx(mlp.gain - ctl.gain, abs=1e-12)
    assert 0.15 < mlp.over_control < 0.25 and 0 < mlp.over_control_low
    assert mlp.over_control_low - 1e-9 <= mlp.over_control <= mlp.over_control_high + 1e-9
    assert rows[("mlp", "raw_cls")].over_control == pytest.approx(0.0, abs=1e-12)
    assert pd.isna(rows[("lightgbm", "rollout")].control) and np.isnan(rows[("lightgbm", "rollout")].over_control)
    assert pd.isna(ctl.control)  # a control has no control
    assert list(t.columns[t.columns.get_loc("ci_high") + 1:][:6]) == ["control", "over_control", "over_control_low",
                                                                       "over_control_high", "over_control_p",
                                                                       "over_control_unit"]
    assert mlp.over_control_unit == UNIT_RECIPE_WELCH  # one seed, two recipes a side: Welch over recipes
