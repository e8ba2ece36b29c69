"""The live progress line of `study run`: what it says, and that it is drawn on a terminal only."""
import os
import pty
import subprocess
import sys
import textwrap

from rich.console import Console

from study.progress import LiveLine


def test_the_line_counts_trials_and_estimates_the_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("study.progress.time.perf_counter", lambda: clock[0])
    line = LiveLine(Console(file=open(os.devnull, "w")), "demo", "max")
    line.t0 = 100.0
    assert line.text() == "demo: preparing (0:00 elapsed)"
    line.update(finished=0, total=8, running=2, baselines=0, best=None, completed=0, pruned=0, failed=0)
    clock[0] = 130.0
    assert line.text() == ("demo: 0/8 recipes finished (0 completed, 0 pruned, 0 failed), 2 running; "
                           "best val objective - (max); 0:30 elapsed, time left: after the first recipe")
    line.update(finished=3, total=8, running=2, baselines=1, best=0.61234, completed=2, pruned=1, failed=0)
    clock[0] = 190.0  # 3 recipes in 90 s: 5 more take about 150 s
    assert line.text() == ("demo: 3/8 recipes finished (2 completed, 1 pruned, 0 failed), 2 running, 1 baseline(s) "
                           "running; best val objective 0.612 (max); 1:30 elapsed, about 2:30 left")


def test_a_resumed_study_estimates_from_this_run_only(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("study.progress.time.perf_counter", lambda: clock[0])
    line = LiveLine(Console(file=open(os.devnull, "w")), "demo", "min")
    line.t0 = 0.0
    line.update(finished=6, total=8, running=1, baselines=0, best=0.2, completed=6, pruned=0, failed=0)  # 6 kept
    line.update(finished=7, total=8, running=1, baselines=0, best=0.2, completed=7, pruned=0, failed=0)
    clock[0] = 3700.0
    assert line.text().endswith("best val objective 0.200 (min); 1:01:40 elapsed, about 1:01:40 left")


SPEC = textwrap.dedent("""\
    name: progress
    domain: synthetic_ddsm
    data: {n_train: 100, n_val: 40, n_test: 40, image_size: 32, seed: 0}
    student: {patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 1, batch_size: 32}
    search_space:
      teacher: {type: categorical, choices: [mlp]}
      alpha: {type: float, low: 0.1, high: 1.0}
    evaluation: {methods: [raw_cls], metrics: [pointing_game]}
    executor: {kind: local, trials: 2, scheduler: fifo, seed: 0}
    """)


def test_study_run_draws_the_line_on_a_terminal_and_not_in_a_log(tmp_path, cache_dir):
    (tmp_path / "p.yaml").write_text(SPEC)
    env = dict(os.environ, MMPKD_CACHE=cache_dir, COLUMNS="200")
    cmd = [sys.executable, "-m", "study.cli", "run", "p.yaml", "--no-report"]
    primary, secondary = pty.openpty()
    run = subprocess.Popen(cmd + ["--db", "tty.duckdb"], cwd=tmp_path, env=env, stdin=secondary, stdout=secondary,
                           stderr=secondary, start_new_session=True)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    tty = b"".join(chunks).decode(errors="replace")
    assert run.wait(timeout=600) == 0, tty[-3000:]
    assert "progress: 1/2 recipes finished (1 completed, 0 pruned, 0 failed)" in tty
    assert "trial [2/2] teacher=mlp" in tty  # the per-trial lines scroll above the live line
    log = subprocess.run(cmd + ["--db", "tty.duckdb", "--name", "logged"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert log.returncode == 0, log.stderr
    assert "recipes finished" not in log.stdout + log.stderr and "trial [2/2] teacher=mlp" in log.stdout
