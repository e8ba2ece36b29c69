"""The report's data steps on a small database built in the test: values, not plot JSON."""
import duckdb
import pytest

from reports import data


@pytest.fixture()
def con(demo_db):
    c = duckdb.connect(str(demo_db), read_only=True)
    yield c
    c.close()


def test_overview_counts_trials_and_baselines_apart(con):
    (row,) = data.overview(con, ["demo"])
    assert (row["trials"], row["completed"], row["pruned"], row["failed"], row["baselines"]) == (4, 4, 0, 0, 1)
    assert row["wall_seconds"] == 12.0 and row["spec"]["objective"]["metric"] == "pointing_game"


def test_trials_exclude_baselines_and_carry_params(con):
    rows = data.trials(con, ["demo"])
    assert [r["trial_id"] for r in rows] == ["0000", "0001", "0002", "0003"]
    assert [r["params"]["teacher"] for r in rows] == ["mlp", "mlp", "lightgbm", "lightgbm"]


def test_gains_rows_are_per_recipe_and_say_they_have_one_seed(con):
    from study.inference import UNIT_ONE_MODEL

    rows = data.gains(con, ["demo"])
    assert len(rows) == 4 * 2 * 2  # recipes x methods x metrics, chance maps excluded
    assert len(data.gains(con, ["demo"], "pointing_game")) == 4 * 2
    mlp = [r for r in rows if r["number"] == 0 and r["method"] == "rollout" and r["metric"] == "relevance_mass"][0]
    expected = con.execute("""SELECT avg(l.value) - avg(b.value) FROM localization l JOIN localization b
        ON b.trial_id = 'baseline-b0' AND b.image_id = l.image_id AND b.method = l.method AND b.metric = l.metric
        WHERE l.trial_id = '0000' AND l.method = 'rollout' AND l.metric = 'relevance_mass'""").fetchone()[0]
    assert mlp["gain"] == pytest.approx(expected) and mlp["ci_low"] <= mlp["gain"] <= mlp["ci_high"]
    assert mlp["params"] == {"teacher": "mlp"}
    # one seed per recipe: the interval is the image bootstrap of one model, and no seed-level p-value
    assert all(r["unit"] == UNIT_ONE_MODEL and r["n"] == 1 and r["p_value"] != r["p_value"] for r in rows)


def test_the_report_says_a_one_seed_study_has_no_seed_replication(demo_db, tmp_path):
    from reports import build_report
    from study.inference import ONE_SEED_NOTE

    out = tmp_path / "r.html"
    build_report(str(demo_db), ["demo"], str(out))
    html = out.read_text()
    assert f"<b>demo</b>: {ONE_SEED_NOTE}." in html
    assert "hollow: 1 seed, the interval shows test-set sampling only" in html


def test_metric_by_dimension_one_row_per_trial_dimension_method_metric(con):
    rows = data.metric_by_dimension(con, ["demo"], "relevance_mass")
    assert len(rows) == 4 * 1 * 4  # 4 trials x 1 dimension x 4 methods (with chance maps)
    assert {r["dimension"] for r in rows} == {"teacher"}


def test_pareto_rows_and_front():
    assert data.pareto_front([(0.9, 0.1), (0.8, 0.5), (0.7, 0.4), (0.9, 0.05)]) == [0, 1]


def test_pareto_includes_the_baseline_of_the_study(con):
    rows = data.pareto(con, ["demo"], "pointing_game")
    assert sum(r["is_baseline"] for r in rows) == 2  # the baseline under raw_cls and rollout
    assert sum(not r["is_baseline"] for r in rows) == 4  # each trial under its sampled method


def test_curves_per_trial_epoch(con):
    rows = data.curves(con, ["demo"])
    assert len(rows) == 8 and rows[0]["epoch"] == 1 and rows[1]["loss"] == 0.5


def test_importance_is_not_drawn_from_an_optimise_study(con):
    from reports.importance import importance_notes, importance_rows

    assert importance_rows(con, ["demo"], "relevance_mass", n_boot=5) == []
    assert importance_notes(con, ["demo"]) == [
        "demo: an optimize study; importance is not estimated from adaptively sampled, mostly pruned recipes -- run a "
        "sensitivity study (design: sensitivity)"]


def test_importance_table_of_the_only_dimension_is_all_of_it():
    from reports.importance import optuna_distributions, importance_table

    rows = [{"params": {"teacher": t}, "gain": g} for t, g in
            [("mlp", 0.3), ("mlp", 0.31), ("lightgbm", 0.0), ("lightgbm", 0.01)] * 2]
    space = {"teacher": {"type": "categorical", "choices": ["lightgbm", "mlp"]}}
    out = importance_table(rows, optuna_distributions(space), n_boot=5)
    assert {r["method"] for r in out} == {"fANOVA", "PED-ANOVA", "LightGBM TreeSHAP"}
    for r in out:
        assert r["dimension"] == "teacher" and r["trials"] == 8
        assert r["importance"] == pytest.approx(1.0)


def test_trend_recovers_a_line_and_brackets_it():
    import numpy as np

    x = np.linspace(1, 8, 60)
    t = data.trend(x, 0.1 * x, log=False)
    mid = len(t["x"]) // 2
    assert t["y"][mid] == pytest.approx(0.1 * t["x"][mid], abs=0.02)
    assert all(lo <= y <= hi for lo, y, hi in zip(t["low"], t["y"], t["high"]))
    assert data.trend([1, 2, 3], [0, 0, 0]) is None  # too few points


def test_overview_names_the_best_recipe(con):
    (row,) = data.overview(con, ["demo"])
    assert row["best"]["params"] == {"teacher": "mlp"} and row["best"]["seeds"] == 1


def test_png_without_chromium_says_how_to_get_it(demo_db, tmp_path, monkeypatch):
    import reports
    from study.errors import StudyError

    monkeypatch.setattr(reports, "chromium_path", lambda: None)
    with pytest.raises(StudyError, match=r"--png needs Chromium .* apt-get install -y chromium"):
        reports.build_report(str(demo_db), ["demo"], str(tmp_path / "r.html"), png_dir=str(tmp_path / "png"))
    assert not (tmp_path / "r.html").exists()


def test_gallery_picks_the_most_improved_and_worsened_images_of_the_best_trial(con):
    rows = data.gallery(con, ["demo"], "relevance_mass", k=2)
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 1
    gains = [r["gain"] for r in rows]
    assert gains == sorted(gains, reverse=True)
    assert all(r["gain"] == pytest.approx(r["value"] - r["baseline_value"]) for r in rows)
    assert all(r["image"] is None for r in rows)  # this database has no prepared-data cache to read from


def test_report_draws_the_heatmaps_the_user_names(demo_db, tmp_path):
    from reports import build_report

    out = tmp_path / "r.html"
    build_report(str(demo_db), ["demo"], str(out), heatmaps=[("alpha_bin", "attention_method")])
    html = out.read_text()
    assert "Ablation: synthetic_ddsm, teacher x attention_method" in html
    assert "Ablation: synthetic_ddsm, alpha_bin x attention_method" in html


def test_overview_says_which_training_subset_and_what_slot_use(demo_db):
    from reports.render import overview_html
    from study.store import Store

    store = Store(demo_db)
    store.set_data_subset("demo", "training subset: 40 of 120 training images (12 of 30 patients)")
    store.finish_study("demo", "completed", 12.0, slots=1)  # 4 trials + the baseline of 1.0 s each: 5 s over 12 s
    store.close()
    c = duckdb.connect(str(demo_db), read_only=True)
    (row,) = data.overview(c, ["demo"])
    c.close()
    assert row["data_subset"] == "training subset: 40 of 120 training images (12 of 30 patients)"
    assert row["slot_utilisation"] == pytest.approx(5 / 12)
    page = overview_html([row])
    assert "<b>demo</b>: training subset: 40 of 120 training images (12 of 30 patients)</p>" in page
    assert "<td>0.42</td>" in page
