"""``study ablate`` and ``study query`` on a database built in the test (no training)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from study.gains import ablation, image_gains, refresh_gains
from study.stats import PairingError
from study.store import Store

IMAGES = [f"img{i:02d}" for i in range(30)]


def config(teacher, alpha, seed=0):
    return {"domain": "synthetic_ddsm", "teacher": teacher, "temperature": 2.0, "alpha": alpha, "beta": 0.0,
            "attention_method": "rollout", "seed": seed, "student": {"lr": 1e-3, "weight_decay": 0.05, "epochs": 2}}


def result(seed, scores):
    return {"seed": seed, "val_objective": 0.5, "test_objective": 0.5, "val_auroc": 0.9, "test_auroc": 0.9,
            "trial_seconds": 1.0, "image_ids": IMAGES, "scores": scores}


def scores(rng, shift):
    out = {}
    for method in ("rollout", "raw_cls", "uniform", "centre"):
        s = 0.0 if method in ("uniform", "centre") else shift.get(method, 0.0)
        out[f"{method}|pointing_game"] = [float(v) for v in (rng.random(30) < 0.4 + s)]
        out[f"{method}|relevance_mass"] = list(np.clip(rng.normal(0.3 + s, 0.05, 30), 0, 1))
    return out


@pytest.fixture()
def db(tmp_path):
    """Baseline + 4 trials: 'mlp' trials gain +0.3 on rollout, 'lightgbm' trials gain nothing."""
    rng = np.random.default_rng(0)
    store = Store(tmp_path / "s.duckdb")
    store.create_study("demo", "synthetic_ddsm", json.dumps({"objective": {"metric": "pointing_game"}}), "h")
    base = scores(rng, {})
    store.trial_started("demo", "baseline-b0", None, config("none", 0.0), {}, "b0", None)
    store.trial_finished("demo", "baseline-b0", "completed", [], result(0, base))
    for i, teacher in enumerate(["mlp", "mlp", "lightgbm", "lightgbm"]):
        shift = {"rollout": 0.3} if teacher == "mlp" else {}
        s = {k: list(np.clip(np.array(v) + (shift.get(k.split("|")[0], 0.0) if "relevance" in k else 0), 0, 1))
             for k, v in base.items()}
        for k in s:
            if k.startswith("rollout|pointing_game") and teacher == "mlp":
                s[k] = [1.0] * 30
        tid = f"{i:04d}"
        store.trial_started("demo", tid, i, config(teacher, 0.5), {"teacher": teacher}, f"h{i}", "b0")
        store.trial_finished("demo", tid, "completed", [], result(0, s))
    refresh_gains(store, "demo", n_boot=200)
    store.close()
    return tmp_path / "s.duckdb"


def cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, COLUMNS="200"))


def test_ablation_values(db):
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    t = ablation(con, ["demo"], ["teacher", "attention_method"], "relevance_mass", n_boot=500)
    rows = {(r.teacher, r.attention_method): r for r in t.itertuples()}
    assert set(rows) == {("lightgbm", "raw_cls"), ("lightgbm", "rollout"), ("mlp", "raw_cls"), ("mlp", "rollout")}
    gain = rows[("mlp", "rollout")]
    base_mean = con.execute("SELECT avg(value) FROM localization WHERE trial_id = 'baseline-b0' AND method = 'rollout'"
                            " AND metric = 'relevance_mass'").fetchone()[0]
    expected = con.execute("SELECT avg(value) FROM localization WHERE trial_id IN ('0000', '0001') AND method = 'rollout'"
                           " AND metric = 'relevance_mass'").fetchone()[0] - base_mean
    assert gain.gain == pytest.approx(expected, abs=1e-12)
    assert gain.ci_low > 0.2 and gain.p_holm < 0.001 and gain.trials == 2 and gain.images == 60
    none = rows[("lightgbm", "rollout")]
    assert none.gain == 0.0 and none.ci_low == none.ci_high == 0.0 and none.p_value == 1.0
    assert t["p_holm"].between(0, 1).all()
    assert gain.chance_uniform == pytest.approx(np.mean(scores(np.random.default_rng(0), {})["uniform|relevance_mass"]))
    con.close()


def test_gains_table_written_per_trial(db):
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT trial_id, method, metric, test, round(gain, 6) FROM gains WHERE trial_id = '0000'"
                       " ORDER BY method, metric").fetchall()
    assert [r[:4] for r in rows] == [("0000", "raw_cls", "pointing_game", "mcnemar"),
                                     ("0000", "raw_cls", "relevance_mass", "wilcoxon"),
                                     ("0000", "rollout", "pointing_game", "mcnemar"),
                                     ("0000", "rollout", "relevance_mass", "wilcoxon")]
    assert rows[0][4] == 0.0 and rows[3][4] > 0.2
    con.close()


def test_a_missing_baseline_image_is_an_error(db):
    import duckdb

    con = duckdb.connect(str(db))
    con.execute("DELETE FROM localization WHERE trial_id = 'baseline-b0' AND image_id = 'img03'")
    with pytest.raises(PairingError, match="image img03 has no baseline score"):
        image_gains(con, ["demo"])
    con.execute("DELETE FROM localization WHERE image_id = 'img03'")
    con.execute("DELETE FROM localization WHERE trial_id = '0001' AND image_id = 'img04'")
    with pytest.raises(PairingError, match="no trial score on the same image"):
        image_gains(con, ["demo"])
    con.close()


def test_ablate_cli_csv_and_errors(db):
    out = cli(["ablate", "demo", "--by", "teacher", "--metric", "relevance_mass", "--format", "csv",
               "--db", str(db)], db.parent)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == ("teacher,trials,images,score,baseline,gain,ci_low,ci_high,p_value,test,p_holm,"
                        "chance_uniform,chance_centre")
    assert lines[1].startswith("lightgbm,2,120,") and lines[2].startswith("mlp,2,120,")
    bad = cli(["ablate", "demo", "--by", "teachr", "--db", str(db)], db.parent)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error: unknown factor 'teachr'. Did you mean 'teacher'? Known: study, domain")
    missing = cli(["ablate", "dem0", "--db", str(db)], db.parent)
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: no study 'dem0' in the database. "
                                                               "Did you mean 'demo'? Stored: demo")


def test_query_reads_and_refuses_to_write(db):
    out = cli(["query", "SELECT count(*) AS n FROM trials WHERE NOT is_baseline", "--format", "json",
               "--db", str(db)], db.parent)
    assert out.returncode == 0 and json.loads(out.stdout) == [{"n": 4}]
    write = cli(["query", "DELETE FROM trials", "--db", str(db)], db.parent)
    assert (write.returncode, write.stderr.strip()) == (1, "error: study query is read-only; it does not modify "
                                                           "the database")
    bad = cli(["query", "SELECT nope FROM trials", "--db", str(db)], db.parent)
    assert bad.returncode == 1 and bad.stderr.startswith("error: query failed: Binder Error")
