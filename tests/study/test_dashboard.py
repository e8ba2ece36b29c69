"""The Optuna storage beside the database, served by `study dashboard`: the trials DuckDB holds, the
trials finished so far while a study runs, and the command's one-line errors."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import duckdb
import pytest

from test_cluster import free_port, stop_group

SPEC = textwrap.dedent("""\
    name: dash
    domain: synthetic_ddsm
    data: {n_train: 100, n_val: 40, n_test: 40, image_size: 32, seed: 0}
    student: {patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 8, batch_size: 32}
    recipe: {teacher: label_smoothing}   # a control: no teacher to fit
    objective: {metric: relevance_mass}
    search_space:
      alpha: {type: float, low: 0.1, high: 1.0}
      attention_method: {type: categorical, choices: [raw_cls, rollout]}
      num_heads: {type: categorical, choices: [2, 3]}   # 3 does not divide width 32: those trials fail
    evaluation: {methods: [raw_cls, rollout], metrics: [pointing_game, relevance_mass]}
    executor: {kind: local, trials: 4, sample_batch: 2, scheduler: fifo, seed: 0}
    """)
FORBIDDEN = ("torch", "timm", "transformers", "ray", "lightgbm")
STUDY = [sys.executable, "-m", "study.cli"]


def optuna_trials(path, name: str, storage=None) -> list | None:
    import optuna

    from study.tracking import optuna_storage

    try:
        return optuna.load_study(study_name=name, storage=storage or optuna_storage(path)).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return None


@pytest.fixture(scope="module")
def live_study(tmp_path_factory, cache_dir):
    """The study run by the CLI in another process while this one reads its Optuna storage."""
    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "dash.yaml").write_text(SPEC)
    proc = subprocess.Popen(STUDY + ["run", "dash.yaml", "--db", "d.duckdb", "--no-report"], cwd=tmp,
                            env=dict(os.environ, MMPKD_CACHE=cache_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []  # (trial ids read, whether the study was still running after the read)
    storage = None
    try:
        while proc.poll() is None:
            if storage is None and (tmp / "d.optuna.log").exists():
                from study.tracking import optuna_storage

                storage = optuna_storage(tmp / "d.optuna.log")  # one reader that follows the file as it grows
            trials = optuna_trials(None, "dash", storage) if storage is not None else None
            if trials is not None:
                seen.append(([t.user_attrs["trial_id"] for t in trials], proc.poll() is None))
            time.sleep(0.05)
        out = proc.stdout.read()
    finally:
        stop_group(proc)
    assert proc.returncode == 0, out[-3000:]
    return tmp, seen


def duckdb_trials(db):
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT trial_id, status, val_objective, params_json, test_objective FROM trials "
                       "WHERE NOT is_baseline ORDER BY trial_id").fetchall()
    epochs = {}
    for tid, epoch, value in con.execute("SELECT trial_id, epoch, val_objective FROM epochs ORDER BY ALL").fetchall():
        epochs.setdefault(tid, {})[epoch] = value
    con.close()
    return rows, epochs


def test_finished_trials_appear_while_the_study_runs_and_none_twice(live_study, cache_dir):
    tmp, seen = live_study
    rows, _ = duckdb_trials(tmp / "d.duckdb")
    final = [r[0] for r in rows]
    assert len(final) == 4 and {r[1] for r in rows} == {"completed", "failed"}, rows  # the seeded sampler's mix
    midway = [ids for ids, running in seen if running and 0 < len(ids) < len(final)]
    assert midway, seen  # read while the study still had trials to run
    previous: list = []
    for ids, _ in seen:  # never a duplicate, never a trial the database does not hold, added in order
        assert len(set(ids)) == len(ids) and set(ids) <= set(final)
        assert ids[:len(previous)] == previous
        previous = ids
    assert sorted(t.user_attrs["trial_id"] for t in optuna_trials(tmp / "d.optuna.log", "dash")) == final
    # a spec without `tracking:` writes no MLflow store and no event files
    assert not list(tmp.glob("*.db")) and not (tmp / "mlflow-artifacts").exists()
    assert not [d for d in ("dash", "dash-baselines") if os.path.exists(os.path.join(cache_dir, "ray_results", d))]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_the_dashboard_serves_what_duckdb_holds_and_imports_no_science(live_study):
    tmp, _ = live_study
    port = free_port()
    err = open(tmp / "dashboard.err", "w")
    server = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "study.cli", "dashboard", "--db", "d.duckdb",
                               "--port", str(port)], cwd=tmp, stdout=subprocess.PIPE, stderr=err, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp / "dashboard.err").read_text()[-2000:]
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.3)
        (study,) = [s for s in studies if s["study_name"] == "dash"]
        assert study["directions"] == ["maximize"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}")
    finally:
        stop_group(server)
        err.close()
    assert server.stdout.read().strip() == f"optuna-dashboard for d.duckdb: http://127.0.0.1:{port}/  (Ctrl-C to stop)"

    rows, epochs = duckdb_trials(tmp / "d.duckdb")
    served = {next(a["value"] for a in t["user_attrs"] if a["key"] == "trial_id"): t for t in detail["trials"]}
    assert sorted(served) == [r[0] for r in rows]
    for tid, status, value, params, test_objective in rows:
        t = served[tid]
        assert t["state"] == {"completed": "Complete", "failed": "Fail"}[status]
        assert t.get("values") == ([value] if status == "completed" else None)
        assert {s["step"]: s["value"] for s in t["intermediate_values"]} == epochs.get(tid, {})
        served_params = {p["name"]: p["param_external_value"] for p in t["params"]}
        assert served_params == {k: str(v) for k, v in json.loads(params).items()}
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        if status == "completed":
            assert float(attrs["test_objective"]) == test_objective
            assert "gain" in attrs  # the matched baseline ran before the sweep
    assert sum(len(v) for k, v in epochs.items() if k in served) > 0

    imported = set()
    for line in (tmp / "dashboard.err").read_text().splitlines():
        if line.startswith("import time:") and "|" in line:
            imported.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "optuna_dashboard" in imported  # the import log is read
    assert not imported & set(FORBIDDEN), imported & set(FORBIDDEN)


def run_cli(args, cwd):
    return subprocess.run(STUDY + args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_a_database_without_the_optuna_storage_says_how_to_make_it(tmp_path):
    from study.store import Store

    store = Store(tmp_path / "old.duckdb")
    store.con  # an empty study database, as an engine before the Optuna storage left it
    store.close()
    out = run_cli(["dashboard", "--db", "old.duckdb"], tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == ("error: 'old.duckdb' has no Optuna storage (old.optuna.log beside it); run a study "
                                  "with this engine version to write it: study run SPEC --db old.duckdb")


def test_a_port_in_use_is_named(tmp_path):
    import optuna

    from study.tracking import optuna_storage

    optuna.create_study(study_name="s", storage=optuna_storage(tmp_path / "s.optuna.log"))
    (tmp_path / "s.duckdb").write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli(["dashboard", "--db", "s.duckdb", "--port", str(port)], tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: port {port} is in use; choose another with --port"
