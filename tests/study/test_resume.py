"""A real study killed with SIGKILL while trials run, then resumed: nothing lost, nothing twice."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import duckdb
import pytest

SPEC = textwrap.dedent("""\
    name: killed
    domain: synthetic_ddsm
    data: {{n_train: 1200, n_val: 40, n_test: 40, image_size: 32, seed: 0}}
    student: {{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 4, batch_size: 32}}
    search_space:
      teacher: {{type: categorical, choices: [lightgbm, mlp]}}
      alpha: {{type: float, low: 0.1, high: 1.0}}
    executor: {{kind: {kind}, trials: 6, max_concurrent: 2, sample_batch: 2, scheduler: fifo, seed: 3}}
    """)


def training(db, finished: int) -> bool:
    """A recipe is running after two have completed, in the state the study last published, and that state
    is not behind the study's own output (``finished`` recipes printed): the recipe it shows running still is."""
    from study.store import connect

    try:
        con = connect(str(db), read_only=True)
    except Exception:  # between the snapshot's rename and the open: ask again
        return False
    try:
        done, running = con.execute("SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE "
                                    "status = 'running') FROM trials WHERE NOT is_baseline").fetchone()
    finally:
        con.close()
    return done >= 2 and running > 0 and done == finished


def mid_trial(lines: list, seen_at: float) -> bool:
    """The local executor runs one recipe at a time and starts the next as soon as one is printed: half a
    trial's printed seconds after the second (or a later) recipe's line, the next recipe is training."""
    done = [s for s in lines if "trial [" in s]
    if len(done) < 2 or len(done) == 6:
        return False
    seconds = float(done[-1].rsplit("(", 1)[1].split(" s)")[0])
    return time.time() - seen_at >= seconds / 2


def start(tmp_path, cache_dir, *args):
    env = dict(os.environ, MMPKD_CACHE=cache_dir, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.trains
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "ray"])
def test_sigkill_then_resume(tmp_path, cache_dir, kind):
    (tmp_path / "s.yaml").write_text(SPEC.format(kind=kind))
    proc = start(tmp_path, cache_dir, "run", "s.yaml", "--db", "s.duckdb", "--no-report")
    seen, deadline = [], time.time() + 300
    arrived = [time.time()]  # when the last line came

    def read():
        for line in iter(proc.stdout.readline, ""):
            seen.append(line)
            arrived[0] = time.time()

    threading.Thread(target=read, daemon=True).start()
    # kill while a recipe trains, once two have finished. Trials take about a second here, and the study
    # publishes its state at a paced rate, so the local executor is killed half a trial after a recipe's line
    # (it starts the next one at once); under Ray, batches start together, and the published state says when
    # a recipe runs
    while time.time() < deadline and proc.poll() is None:
        lines = list(seen)
        finished = sum("trial [" in s for s in lines)
        if mid_trial(lines, arrived[0]) if kind == "local" else training(tmp_path / "s.duckdb", finished):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the study ended before it could be killed mid-trial:\n" + "".join(seen)
    assert sum("trial [" in s for s in seen) >= 2, "".join(seen)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    before = con.execute(
        "SELECT number, status, params_json FROM trials WHERE NOT is_baseline ORDER BY number").fetchall()
    con.close()
    assert {s for _, s, _ in before} == {"completed", "running"}, before
    killed = {n: json.loads(p) for n, s, p in before if s == "running"}

    resumed = subprocess.run([sys.executable, "-m", "study.cli", "run", "s.yaml", "--db", "s.duckdb"], cwd=tmp_path,
                             env=dict(os.environ, MMPKD_CACHE=cache_dir), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming killed:" in resumed.stdout

    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    after = con.execute(
        "SELECT number, status, params_json FROM trials WHERE NOT is_baseline ORDER BY number").fetchall()
    assert [n for n, _, _ in after] == list(range(6))  # every planned recipe exactly once
    assert all(s == "completed" for _, s, _ in after)
    for n, params in killed.items():  # the interrupted recipes ran again with the same sampled values
        assert json.loads(after[n][2]) == params
    for table in ("epochs", "localization", "evaluation", "gains"):
        orphans = con.execute(f"SELECT count(*) FROM {table} x WHERE NOT EXISTS (SELECT 1 FROM trials t"
                              " WHERE t.study = x.study AND t.trial_id = x.trial_id)").fetchone()[0]
        assert orphans == 0, table
    assert con.execute("SELECT count(*) FROM trials WHERE is_baseline").fetchone()[0] == 1
    assert con.execute("SELECT status FROM studies").fetchone() == ("completed",)
    con.close()
    assert (tmp_path / "reports" / "killed.html").stat().st_size > 1_000_000

    # the same spec run without interruption samples the same recipes
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "s.yaml").write_text(SPEC.format(kind="local"))
    fresh = subprocess.run([sys.executable, "-m", "study.cli", "run", "s.yaml", "--db", "f.duckdb", "--no-report"],
                           cwd=tmp_path / "fresh", env=dict(os.environ, MMPKD_CACHE=cache_dir), capture_output=True,
                           text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    con = duckdb.connect(str(tmp_path / "fresh" / "f.duckdb"), read_only=True)
    uninterrupted = con.execute("SELECT params_json FROM trials WHERE NOT is_baseline ORDER BY number").fetchall()
    con.close()
    assert [json.loads(p) for (p,) in uninterrupted] == [json.loads(p) for _, _, p in after]


def test_a_second_writer_during_a_running_study_is_refused_with_one_line(tmp_path, cache_dir):
    slow = SPEC.format(kind="local").replace("n_train: 1200", "n_train: 3000").replace("epochs: 4", "epochs: 30")
    (tmp_path / "s.yaml").write_text(slow)  # trains for minutes: the second process comes while it writes
    (tmp_path / "other.yaml").write_text(SPEC.format(kind="local").replace("name: killed", "name: other"))
    proc = start(tmp_path, cache_dir, "run", "s.yaml", "--db", "s.duckdb", "--no-report")
    try:
        deadline = time.time() + 300
        while time.time() < deadline and "data and teachers ready" not in proc.stdout.readline():
            pass
        second = subprocess.run([sys.executable, "-m", "study.cli", "run", "other.yaml", "--db", "s.duckdb"],
                                cwd=tmp_path, env=dict(os.environ, MMPKD_CACHE=cache_dir), capture_output=True,
                                text=True, timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        rest = proc.communicate(timeout=60)[0]
    assert second.returncode == 1, rest
    assert second.stderr.strip() == ("error: database 's.duckdb' is in use by another writing process (a study still "
                                     "running?); wait for it to finish or use --db OTHER.duckdb")
    assert second.stdout == "" and not (tmp_path / "reports").exists()
