"""`study run --address` joins an existing Ray cluster (a real head started with `ray start` on
loopback); the database stays with the driver."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from conftest import free_port, stop_group
from test_end_to_end import TINY

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.mark.trains
@pytest.mark.slow
def test_a_study_through_an_existing_cluster(tmp_path, cache_dir):
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled", MMPKD_CACHE=cache_dir)
    # `--block` keeps the head in the foreground, in a process group of its own: the test stops exactly what it
    # started (never `ray stop`, which would stop every Ray of the user on this machine)
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_port(port, head)
        (tmp_path / "tiny.yaml").write_text(TINY.format(name="on-cluster", domain="synthetic_ddsm",
                                                        teachers="lightgbm, mlp", kind="ray"))
        out = subprocess.run([sys.executable, "-m", "study.cli", "run", "tiny.yaml", "--db", "t.duckdb", "--no-report",
                              "--address", f"127.0.0.1:{port}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        con = duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True)
        assert con.execute("SELECT count(*) FROM trials WHERE status = 'completed' AND NOT is_baseline").fetchone() == (2,)
        con.close()
    finally:
        stop_group(head)


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"the Ray head did not listen on {port} within {seconds} s")


