"""Study designs: sensitivity (scrambled Sobol, stratified, all completed) and ablation (a reference
recipe and one change at a time, or a factorial), their bad inputs, and a tiny end-to-end run of each."""
import os
import subprocess
import sys

import duckdb
import numpy as np
import pytest
import yaml

from study.design import ablation_recipes, sobol_recipes
from study.errors import SpecError
from study.load import spec_from_dict

TINY = {"domain": "synthetic_ddsm", "data": {"n_train": 120, "n_val": 40, "n_test": 40, "image_size": 32, "seed": 0},
        "student": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "epochs": 1, "batch_size": 32},
        "objective": {"metric": "pointing_game"},
        "evaluation": {"methods": ["raw_cls", "rollout"], "metrics": ["pointing_game", "relevance_mass"]}}
SPACE = {"temperature": {"type": "float", "low": 1.0, "high": 8.0, "log": True},
         "alpha": {"type": "float", "low": 0.0, "high": 1.0},
         "teacher": {"type": "categorical", "choices": ["lightgbm", "mlp"]}}


def spec(**kw):
    return spec_from_dict({"name": "d", **TINY, **kw})


def test_sobol_recipes_stratify_every_dimension_on_its_own_scale():
    s = spec(design="sensitivity", search_space=SPACE, executor={"trials": 16, "seed": 3})
    recipes = sobol_recipes(s)
    assert recipes == sobol_recipes(s)  # seeded
    t = np.array([r["temperature"] for r in recipes])
    a = np.array([r["alpha"] for r in recipes])
    # one recipe per 1/16 of each range: log scale for temperature, linear for alpha
    assert sorted(np.floor(np.log(t) / np.log(8.0) * 16).astype(int)) == list(range(16))
    assert sorted(np.floor(a * 16).astype(int)) == list(range(16))
    assert [r["teacher"] for r in recipes].count("mlp") == 8
    assert sobol_recipes(spec(design="sensitivity", search_space=SPACE, executor={"trials": 16, "seed": 4})) != recipes


def test_ablation_recipes_one_at_a_time_and_factorial():
    factors = {"temperature": [1.0, 4.0, 8.0], "teacher": ["lightgbm", "mlp"]}
    s = spec(design="ablation", ablation={"reference": {"teacher": "mlp", "alpha": 0.5}, "factors": factors})
    ref = {"temperature": 4.0, "teacher": "mlp", "alpha": 0.5}  # temperature: the spec's recipe value
    assert ablation_recipes(s, s.ablation.reference) == [
        ref, {**ref, "temperature": 1.0}, {**ref, "temperature": 8.0}, {**ref, "teacher": "lightgbm"}]
    f = spec(design="ablation", ablation={"reference": {"teacher": "mlp", "alpha": 0.5}, "factors": factors,
                                          "mode": "factorial"})
    cells = ablation_recipes(f, f.ablation.reference)
    assert cells[0] == ref and len(cells) == 6 and {(c["temperature"], c["teacher"]) for c in cells} == {
        (t, k) for t in (1.0, 4.0, 8.0) for k in ("lightgbm", "mlp")}


@pytest.mark.parametrize("extra, message", [
    ({"design": "ablation"},
     "ablation: design: ablation needs an 'ablation:' section with 'reference:' and 'factors:'"),
    ({"design": "ablation", "ablation": {"factors": {"alpha": [0.1]}}}, "ablation.reference: missing required key"),
    ({"design": "ablation", "ablation": {"reference": {"alpha": 0.5}}}, "ablation.factors: missing required key"),
    ({"design": "ablation", "ablation": {"reference": {}, "factors": {"temprature": [2.0]}}},
     "ablation.factors.temprature: is not a dimension (did you mean 'temperature'?)"),
    ({"design": "ablation", "ablation": {"reference": {}, "factors": {"alpha": [0.5, 1.5]}}},
     "ablation.factors.alpha[1]: 1.5 lies outside alpha's range [0.0, 1.0]"),
    ({"design": "ablation", "ablation": {"reference": {"teacher": "bert_scratch"}, "factors": {"alpha": [0.5]}}},
     "ablation.reference.teacher: teacher 'bert_scratch' reads text but domain 'synthetic_ddsm' has tabular"),
    ({"design": "ablation", "ablation": {"reference": {}, "mode": "factorial", "factors": {
        "alpha": [0.1, 0.2, 0.3, 0.4, 0.5], "temperature": [1.0, 2.0, 3.0, 4.0], "beta": [0.0, 0.1, 0.2, 0.3]}}},
     "ablation.factors: a factorial of 80 cells; at most 64"),
    ({"design": "sensitivity", "search_space": SPACE, "executor": {"trials": 12}},
     "executor.trials: a sensitivity design needs a power of two so that every dimension is stratified (got 12); "
     "use 8 or 16"),
    ({"ablation": {"reference": {}, "factors": {"alpha": [0.5]}}}, "ablation: applies to design: ablation only"),
])
def test_bad_designs_name_the_key(extra, message):
    with pytest.raises(SpecError) as err:
        spec(**extra)
    assert str(err.value).startswith(message)


def cli(args, cwd, cache):
    return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, MMPKD_CACHE=str(cache), COLUMNS="200"))


@pytest.mark.slow
def test_sensitivity_then_ablation_from_its_best_recipe(tmp_path, cache_dir):
    local = {"kind": "local", "max_concurrent": 1}
    sens = {"name": "sens", **TINY, "design": "sensitivity", "seeds": [0, 1], "search_space": SPACE,
            "executor": {**local, "trials": 4, "seed": 1}}
    abl = {"name": "abl", **TINY, "design": "ablation", "seeds": [0, 1], "executor": local,
           "ablation": {"reference": {"best_of": "sens"},
                        "factors": {"temperature": [2.0], "teacher": ["lightgbm", "mlp"]}}}
    for name, raw in (("sens.yaml", sens), ("abl.yaml", abl)):
        (tmp_path / name).write_text(yaml.safe_dump(raw))
    missing = cli(["run", "abl.yaml", "--db", "s.duckdb", "--no-report"], tmp_path, cache_dir)
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: ablation.reference.best_of: no study 'sens' in "
                                                               "s.duckdb; run it first or name one of: none")
    assert "teacher" not in missing.stdout  # nothing was prepared or trained
    out = cli(["run", "sens.yaml", "--db", "s.duckdb", "--no-report"], tmp_path, cache_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    rows = con.execute("SELECT number, seed, status, params_json FROM trials WHERE study = 'sens' AND NOT is_baseline "
                       "ORDER BY number, seed").fetchall()
    con.close()
    assert [(n, s, st) for n, s, st, _ in rows] == [(n, s, "completed") for n in range(4) for s in (0, 1)]
    from study.load import load_spec

    expected = sobol_recipes(load_spec(tmp_path / "sens.yaml"))
    import json

    assert [json.loads(p) for _, s, _, p in rows if s == 0] == expected  # the Sobol points, in order, none pruned
    out = cli(["run", "abl.yaml", "--db", "s.duckdb"], tmp_path, cache_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    best = con.execute("SELECT any_value(params_json) FROM trials WHERE study = 'sens' AND NOT is_baseline "
                       "GROUP BY number ORDER BY avg(val_objective) DESC, number LIMIT 1").fetchone()[0]
    cells = con.execute("SELECT number, count(*), min(status), any_value(params_json) FROM trials WHERE study = 'abl' "
                        "AND NOT is_baseline GROUP BY number ORDER BY number").fetchall()
    con.close()
    ref = json.loads(best)
    assert json.loads(cells[0][3]) == ref and all(c[1:3] == (2, "completed") for c in cells)
    assert len(cells) == 1 + 1 + 1  # temperature 2.0, and the teacher the reference does not use
    table = cli(["ablate", "abl", "--metric", "relevance_mass", "--format", "csv", "--db", "s.duckdb"], tmp_path,
                cache_dir)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("cell,number,method,gain,ci_low,ci_high,unit,seeds,over_reference,over_reference_low")
    assert lines[1].startswith("reference,0,raw_cls,") and "temperature=2" in table.stdout
    html = (tmp_path / "reports" / "abl.html").read_text()
    assert "Ablation path: abl" in html
    assert "abl: an ablation study; importance is not estimated from one-change-at-a-time cells" in html
