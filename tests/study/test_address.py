"""--address that no cluster answers: one line, exit 1, within seconds, nothing opened or prepared."""
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port
from study.errors import StudyError
from study.ray_executor import check_address

SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"


def test_an_address_no_cluster_answers_stops_the_run_at_once(tmp_path):
    port = free_port()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "study.cli", "run", str(SMOKE), "--db", "a.duckdb", "--address",
                          f"127.0.0.1:{port}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - t0 < 30
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == (f"error: --address 127.0.0.1:{port}: no Ray cluster answers there (connection "
                                  "refused); start a head with 'ray start --head --port 6379' (and 'ray start "
                                  "--address HEAD:6379' on each worker), or leave --address out to run on this machine")
    assert list(tmp_path.iterdir()) == []  # no database, no cache


def test_an_address_that_answers_passes_and_a_malformed_one_is_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_address(f"127.0.0.1:{s.getsockname()[1]}")
        check_address(f"ray://127.0.0.1:{s.getsockname()[1]}")
    with pytest.raises(StudyError, match=r"^--address head-node: write HOST:PORT"):
        check_address("head-node")
