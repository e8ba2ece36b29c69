"""Spec `tracking:` (MLflow runs, TensorBoard event files) under both executors, read back and held
against the database; the Optuna mirror's resume and replace; a tracking URI that cannot be opened."""
import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest

from conftest import config, result, scores

SPEC = textwrap.dedent("""\
    name: {name}
    domain: synthetic_ddsm
    data: {{n_train: 100, n_val: 40, n_test: 40, image_size: 32, seed: 0}}
    student: {{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 2, batch_size: 32}}
    recipe: {{teacher: label_smoothing}}   # a control: no teacher to fit
    objective: {{metric: relevance_mass}}
    search_space:
      alpha: {{type: float, low: 0.1, high: 1.0}}
      attention_method: {{type: categorical, choices: [raw_cls, rollout]}}
    evaluation: {{methods: [raw_cls, rollout], metrics: [pointing_game, relevance_mass]}}
    executor: {{kind: {kind}, trials: 2, max_concurrent: 2, scheduler: fifo, seed: 0}}
    tracking: {{mlflow: {{tracking_uri: "{uri}", experiment: {name}-runs}}, tensorboard: true}}
    """)


def run_cli(args, cwd, cache_dir):
    return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, MMPKD_CACHE=cache_dir), timeout=600)


def stored(db: Path):
    """trial_id -> [is_baseline, number, params, test_objective, test_auroc, [(epoch, val)], val_objective]."""
    con = duckdb.connect(str(db), read_only=True)
    out = {tid: [b, n, json.loads(p), to, ta, [], vo] for tid, b, n, p, to, ta, vo in con.execute(
        "SELECT trial_id, is_baseline, number, params_json, test_objective, test_auroc, val_objective FROM trials"
    ).fetchall()}
    for tid, epoch, value in con.execute("SELECT trial_id, epoch, val_objective FROM epochs ORDER BY ALL").fetchall():
        out[tid][5].append((epoch, value))
    con.close()
    return out


def close(a, b, rel=1e-6) -> bool:  # TensorBoard keeps float32
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=rel, abs_tol=1e-7) for x, y in zip(a, b))


def check_trackers(tmp: Path, name: str, logdir: Path) -> None:
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = stored(tmp / "t.duckdb")
    assert sum(not r[0] for r in rows.values()) == 2 and sum(r[0] for r in rows.values()) == 1
    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"{name}-runs")
    assert exp.artifact_location == (tmp / "mlflow-artifacts").as_uri()  # beside the SQLite file
    runs = client.search_runs([exp.experiment_id], f"tags.study = '{name}'")
    (study_run,) = [r for r in runs if r.data.tags.get("level") == "study"]
    assert [f.path for f in client.list_artifacts(study_run.info.run_id)] == [f"{name}.html"]
    trial_runs = [r for r in runs if r is not study_run]
    assert len(trial_runs) == len(rows)  # one run per recipe (one seed) and one for the baseline
    for run in trial_runs:
        p = run.data.params
        if "_recipe" in p:  # a recipe: its sampled params
            (tid,) = [t for t, r in rows.items() if not r[0] and r[1] == int(p["_recipe"])]
            assert {k: v for k, v in p.items() if k != "_recipe"} == {k: str(v) for k, v in rows[tid][2].items()}
        else:  # the baseline: its whole config
            (tid,) = [t for t, r in rows.items() if r[0]]
            assert p["_baseline/alpha"] == "0.0" and p["_baseline/teacher"] == "none"
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_objective"))
        assert history == rows[tid][5] and len(history) == 2
        assert run.data.metrics["test_objective"] == pytest.approx(rows[tid][3], rel=1e-12)
        assert run.data.metrics["test_auroc"] == pytest.approx(rows[tid][4], rel=1e-12)
        assert run.info.status == "FINISHED"

    curves, finals = [], []
    for folder in (name, f"{name}-baselines"):
        for run in sorted({e.parent for e in (logdir / folder).glob("*/events.out.tfevents.*")}):
            acc = EventAccumulator(str(run))
            acc.Reload()
            curves.append([(e.step, e.value) for e in acc.Scalars("ray/tune/val_objective")])
            finals.append(acc.Scalars("ray/tune/test_objective")[-1].value)
    want = sorted(r[5] for r in rows.values())
    got = sorted(curves)
    assert len(got) == len(want) and all(close([s for s, _ in g], [s for s, _ in w]) and close([v for _, v in g],
                                         [v for _, v in w]) for g, w in zip(got, want)), (got, want)
    assert close(sorted(finals), sorted(r[3] for r in rows.values()))

    import optuna  # and the Optuna storage beside the database, whichever executor ran

    from study.tracking import optuna_storage

    mirrored = optuna.load_study(study_name=name, storage=optuna_storage(tmp / "t.optuna.log")).get_trials()
    assert {t.user_attrs["trial_id"]: t.value for t in mirrored} == {tid: r[6] for tid, r in rows.items() if not r[0]}


def test_local_executor_writes_mlflow_runs_and_event_files_that_match_the_database(tmp_path, cache_dir):
    (tmp_path / "s.yaml").write_text(SPEC.format(name="track-local", kind="local", uri="sqlite:///mlflow.db"))
    out = run_cli(["run", "s.yaml", "--db", "t.duckdb"], tmp_path, cache_dir)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert f"mlflow: experiment 'track-local-runs' -> mlflow ui --backend-store-uri {uri}" in out.stdout
    logdir = Path(cache_dir) / "ray_results"
    assert f"tensorboard: track-local/ and track-local-baselines/ -> tensorboard --logdir {logdir}" in out.stdout
    check_trackers(tmp_path, "track-local", logdir)


@pytest.mark.slow
def test_ray_executor_passes_rays_logger_callbacks(tmp_path, cache_dir):
    (tmp_path / "s.yaml").write_text(SPEC.format(name="track-ray", kind="ray", uri="sqlite:///mlflow.db"))
    out = run_cli(["run", "s.yaml", "--db", "t.duckdb"], tmp_path, cache_dir)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    check_trackers(tmp_path, "track-ray", Path(cache_dir) / "ray_results")


def test_a_tracking_uri_that_cannot_be_opened_stops_the_study_before_training(tmp_path, cache_dir):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "s.yaml").write_text(SPEC.format(name="track-bad", kind="local", uri="sqlite:///afile/m.db"))
    out = run_cli(["run", "s.yaml", "--db", "t.duckdb"], tmp_path, cache_dir)
    assert out.returncode == 1
    assert out.stderr.startswith("error: tracking.mlflow.tracking_uri: cannot open sqlite:///afile/m.db (")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "teacher" not in out.stdout  # nothing prepared, nothing trained
    con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
    assert con.execute("SELECT (SELECT count(*) FROM studies), (SELECT count(*) FROM trials)").fetchone() == (0, 0)
    con.close()


# ---------------------------------------------------------------- the Optuna mirror, without training

def _spec(**executor):
    from study.spec import StudySpec

    return StudySpec.model_validate({
        "name": "m", "domain": "synthetic_ddsm", "objective": {"metric": "pointing_game"},
        "search_space": {"teacher": {"type": "categorical", "choices": ["lightgbm", "mlp"]},
                         "alpha": {"type": "float", "low": 0.1, "high": 1.0}},
        "executor": {"kind": "local", **executor}})


EPOCHS = [{"epoch": e, "loss": 1.0, "ce": 0.5, "kd": 0.4, "feat": 0.0, "lr": 1e-3, "val_auroc": 0.8,
           "val_objective": 0.3 + 0.1 * e, "seconds": 0.1} for e in (1, 2)]


def test_the_optuna_mirror_holds_each_stored_trial_once_through_resume_and_replace(tmp_path):
    import optuna

    from study.store import Store
    from study.tracking import open_trackers, optuna_storage, optuna_storage_path

    rng = np.random.default_rng(1)
    store, spec = Store(tmp_path / "s.duckdb"), _spec()
    store.create_study("m", "synthetic_ddsm", spec.model_dump_json(), spec.spec_hash())
    base, mine = scores(rng, {}), scores(rng, {"rollout": 0.2})
    store.trial_started("m", "baseline-b0", None, config("none", 0.0), {}, "b0", None)
    store.trial_finished("m", "baseline-b0", "completed", [], result(0, base))
    params = [{"teacher": "mlp", "alpha": 0.5}, {"teacher": "lightgbm", "alpha": 0.25},
              {"teacher": "mlp", "alpha": 0.75}, {"teacher": "lightgbm", "alpha": 0.9}]
    for i, p in enumerate(params):
        store.trial_started("m", f"000{i}", i, config(p["teacher"], p["alpha"]), p, f"h{i}", "b0")
    store.trial_finished("m", "0000", "completed", EPOCHS, {**result(0, mine), "val_objective": 0.5,
                                                           "test_objective": 0.6, "test_auroc": 0.7})
    store.trial_finished("m", "0001", "pruned", EPOCHS[:1])
    store.trial_finished("m", "0002", "failed", [], error="Traceback ...\nValueError: the loss is not finite")

    def trials():
        return {t.user_attrs["trial_id"]: t for t in optuna.load_study(
            study_name="m", storage=optuna_storage(optuna_storage_path(store.path))).get_trials()}

    tracked = open_trackers(spec, store, str(tmp_path), resume=True, say=print)  # a study from before the mirror
    got = trials()
    assert sorted(got) == ["0000", "0001", "0002"]  # not the baseline, not the running one
    done, pruned, failed = got["0000"], got["0001"], got["0002"]
    S = optuna.trial.TrialState
    assert (done.state, done.value, done.intermediate_values) == (S.COMPLETE, 0.5, {1: 0.4, 2: 0.5})
    assert done.params == {"teacher": "mlp", "alpha": 0.5}
    assert done.distributions["alpha"] == optuna.distributions.FloatDistribution(0.1, 1.0)
    gain = np.nanmean(np.array(mine["rollout|pointing_game"]) - np.array(base["rollout|pointing_game"]))
    assert done.user_attrs["gain"] == pytest.approx(gain, abs=1e-12) and gain != 0
    assert {k: done.user_attrs[k] for k in ("recipe", "seed", "test_objective", "test_auroc", "val_auroc")} == \
        {"recipe": 0, "seed": 0, "test_objective": 0.6, "test_auroc": 0.7, "val_auroc": 0.9}
    assert (pruned.state, pruned.value, pruned.intermediate_values) == (S.PRUNED, None, {1: 0.4})
    assert (failed.state, failed.user_attrs["error"]) == (S.FAIL, "ValueError: the loss is not finite")

    store.trial_finished("m", "0003", "completed", EPOCHS, {**result(0, mine), "val_objective": 0.45})
    tracked = pickle.loads(pickle.dumps(tracked))  # as Ray Tune pickles the driver's callbacks; reopens lazily
    tracked.finished("0003")
    numbers = {t: x._trial_id for t, x in trials().items()}
    assert sorted(numbers) == ["0000", "0001", "0002", "0003"]

    open_trackers(spec, store, str(tmp_path), resume=True, say=print)  # resumed: nothing added twice
    assert {t: x._trial_id for t, x in trials().items()} == numbers
    store.con.execute("DELETE FROM trials WHERE trial_id = '0003'")  # its recipe was interrupted and runs again
    open_trackers(spec, store, str(tmp_path), resume=True, say=print)
    assert sorted(trials()) == ["0000", "0001", "0002"]  # rebuilt from the database
    open_trackers(spec, store, str(tmp_path), resume=False, say=print)  # --replace: a new study of that name
    assert trials() == {}
    store.close()

