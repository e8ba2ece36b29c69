"""`study run --address` on a real Ray cluster on loopback: a head and a worker node, each `ray start
--block` in a process group of its own, the worker joined with `--address`. The database stays with
the driver; the trials run on both nodes, and the worker node is lost mid-study (its process group and
its Ray workers killed): the study finishes, and every planned recipe is stored exactly once, retried
(executor.max_retries) or failed with the lost node named."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from conftest import free_port, stop_group
from test_end_to_end import TINY

RAY = str(Path(sys.executable).with_name("ray"))
TRIAL = "ray::ImplicitFunc.train"  # the title of a Ray worker process that runs a trial


@pytest.mark.slow
def test_a_study_through_a_cluster_that_loses_its_worker_node(tmp_path, cache_dir):
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled", MMPKD_CACHE=cache_dir)
    # `--block` keeps each node in the foreground, in a process group of its own: the test stops exactly what it
    # started (never `ray stop`, which would stop every Ray of the user on this machine). One CPU each: the two
    # trials that run at once run one on each node.
    node = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *node], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    worker = study = None
    try:
        wait_for_port(port, head)
        worker = subprocess.Popen([RAY, "start", f"--address=127.0.0.1:{port}", *node], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        spec = TINY.format(name="on-cluster", domain="synthetic_ddsm", teachers="lightgbm, mlp", kind="ray")
        # trials of several epochs, so that the two at once outlast the worker node's start
        (tmp_path / "tiny.yaml").write_text(spec.replace("trials: 2", "trials: 4").replace("epochs: 1", "epochs: 8"))
        study = subprocess.Popen([sys.executable, "-m", "study.cli", "run", "tiny.yaml", "--db", "t.duckdb",
                                  "--no-report", "--address", f"127.0.0.1:{port}"], cwd=tmp_path, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines: list[str] = []

        def read() -> None:
            for line in study.stdout:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        t0, lost = time.monotonic(), None
        while lost is None and study.poll() is None and time.monotonic() - t0 < 400:
            # trials run two at once, one on each node (one CPU each; the baseline shares the pool): the worker
            # node goes while it runs one, with every process it started
            if trial_workers(worker.pid):
                lost, t_lost = kill_node(worker), time.monotonic()
            time.sleep(0.2)
        study.wait(timeout=600)
        reader.join(timeout=30)
        out = "".join(lines)
        assert lost, "the worker node ran no recipe\n" + out[-3000:]
        assert study.returncode == 0, out[-3000:]
        con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
        rows = con.execute("SELECT number, status, error FROM trials WHERE NOT is_baseline ORDER BY number").fetchall()
        assert con.execute("SELECT count(*) FROM trials WHERE status = 'running'").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM trials t WHERE epochs_done <> (SELECT count(DISTINCT epoch) FROM "
                           "epochs e WHERE e.study = t.study AND e.trial_id = t.trial_id)").fetchone() == (0,)
        con.close()
        assert [r[0] for r in rows] == [0, 1, 2, 3]  # every planned recipe, once
        assert all(s == "completed" or (s == "failed" and f"node {lost[:12]}" in e) for _, s, e in rows), rows
        lines = [line for line in lines if f"its node {lost[:12]} (" in line]  # named by the lost node's id
        assert any("running it again" in line or "FAILED" in line for line in lines), out[-3000:]
        print(f"lost the worker node {t_lost - t0:.0f} s into the study, which ended {time.monotonic() - t_lost:.0f} s "
              f"later: {lines}")
    finally:
        if study is not None and study.poll() is None:
            study.kill()
            study.wait()
        if worker is not None:
            stop_group(worker)
        stop_group(head)


def trial_workers(leader: int) -> list[int]:
    """The processes of a node (``ray start`` ``leader`` and what it started) that run a trial now."""
    table = processes()
    return [p for p in descendants(leader, table) if table[p][1].startswith(TRIAL)]


def kill_node(proc: subprocess.Popen) -> str:
    """A node lost at once: SIGKILL to its process group and to the Ray workers it started (each of
    those in a session of its own). Returns the node's id."""
    table = processes()
    pids = descendants(proc.pid, table)
    node_id = next(arg.split("=", 1)[1] for p in pids for arg in table[p][1].split() if arg.startswith("--node_id="))
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    return node_id


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        try:
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            out[int(d)] = (ppid, Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(root: int, table: dict[int, tuple[int, str]]) -> list[int]:
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent:
                found.append(pid)
                todo.append(pid)
    return found


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"the Ray head did not listen on {port} within {seconds} s")
