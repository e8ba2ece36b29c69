"""Soak: a 60-recipe study on the local Ray while a fault injector kills a random trial worker every
N seconds, then the database is checked.

The study runs as `study run` in a subprocess (its own local Ray instance). Every ``--every``
seconds the injector sends SIGKILL to one Ray worker process that is running a trial (process title
``ray::ImplicitFunc.train``), chosen at random among the descendants of that study's driver only: no
other Ray on the machine is touched. The kills start once the matched baseline has run (a baseline
killed beyond its retries leaves the study's gains unpaired: the study stops and says to resume it).
Tune runs a killed trial again from its first epoch (``executor.max_retries``, default 1); a trial
killed more often than that is recorded ``failed`` with its cause. At the end the database must have:

- every planned recipe exactly once (one row per recipe number), the study ``completed``;
- no orphan rows: no trial left ``running``, every epochs/localization/evaluation/maps row belongs to
  a trial row, and each trial's stored epochs are one per epoch (a retried trial keeps none of its
  dead attempt's);
- every failed trial with its cause: the last line of its error names the worker process (or node)
  that died.

It prints the kills, retries, failures and the wall time, and exits 1 if a check fails.

    python bench/soak.py [--recipes 60] [--every 10] [--seed 0] [--keep DIR]

(``make soak``; not part of ``make test``: about 10 minutes on 2 cores.)
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SPEC = """\
name: soak
domain: synthetic_ddsm
data: {{n_train: 100, n_val: 40, n_test: 40, image_size: 32, seed: 0}}
student: {{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 3, batch_size: 32}}
search_space:
  teacher: {{type: categorical, choices: [lightgbm, mlp]}}
  alpha: {{type: float, low: 0.1, high: 1.0}}
  temperature: {{type: float, low: 1.0, high: 8.0, log: true}}
  attention_method: {{type: categorical, choices: [raw_cls, rollout]}}
evaluation: {{methods: [raw_cls, rollout], metrics: [pointing_game, relevance_mass]}}
executor: {{kind: ray, trials: {recipes}, max_concurrent: 2, sample_batch: 4, scheduler: fifo, seed: {seed}}}
"""
TRIAL_TITLE = "ray::ImplicitFunc.train"  # a Tune function trainable's actor while it runs a trial


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process this user can read."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        out[int(d)] = (ppid, cmd)
    return out


def descendants(root: int, table: dict[int, tuple[int, str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def trial_workers(driver: int) -> list[int]:
    """The Ray worker processes of this driver's own Ray instance that are running a trial now."""
    table = processes()
    return [p for p in descendants(driver, table) if table[p][1].startswith(TRIAL_TITLE)]


def check(db: Path, recipes: int) -> tuple[list[str], dict]:
    """The end-of-soak checks: (problems, counts)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    def q(sql: str) -> list:
        return con.execute(sql).fetchall()

    problems = []
    numbers = dict(q("SELECT number, count(*) FROM trials WHERE study = 'soak' AND NOT is_baseline GROUP BY number"))
    if sorted(numbers) != list(range(recipes)):
        missing = sorted(set(range(recipes)) - set(numbers))
        problems.append(f"recipes missing: {missing[:10]}; extra: {sorted(set(numbers) - set(range(recipes)))[:10]}")
    twice = {n: c for n, c in numbers.items() if c != 1}
    if twice:
        problems.append(f"recipes stored more than once: {twice}")
    running = q("SELECT trial_id FROM trials WHERE status = 'running'")
    if running:
        problems.append(f"trials left running: {[r[0] for r in running]}")
    for table in ("epochs", "localization", "evaluation", "maps"):
        n = q(f"SELECT count(*) FROM {table} x WHERE NOT EXISTS (SELECT 1 FROM trials t WHERE t.study = x.study "
              f"AND t.trial_id = x.trial_id)")[0][0]
        if n:
            problems.append(f"{n} {table} rows without a trial row")
    bad = q("SELECT t.trial_id, t.epochs_done, count(e.epoch), count(DISTINCT e.epoch) FROM trials t LEFT JOIN epochs e"
            " USING (study, trial_id) GROUP BY ALL HAVING count(e.epoch) <> coalesce(t.epochs_done, 0)"
            " OR count(e.epoch) <> count(DISTINCT e.epoch)")
    if bad:
        problems.append(f"trials whose stored epochs do not match (trial, epochs_done, rows, distinct): {bad[:5]}")
    failed = q("SELECT trial_id, error FROM trials WHERE status = 'failed'")
    # the only faults are the kills: a failed trial's cause (the error's last line) names the process that died
    no_cause = [(t, (e or "").strip().splitlines()[-1:]) for t, e in failed
                if not re.search(r"died|was lost|stopped answering", ((e or "").strip().splitlines() or [""])[-1])]
    if no_cause:
        problems.append(f"failed trials without a kill as their cause: {no_cause}")
    status = q("SELECT status FROM studies WHERE name = 'soak'")
    if status != [("completed",)]:
        problems.append(f"study status {status}")
    counts = dict(q("SELECT status, count(*) FROM trials WHERE NOT is_baseline GROUP BY status"))
    counts["baselines"] = q("SELECT count(*) FROM trials WHERE is_baseline")[0][0]
    counts["causes"] = sorted({(e or "").strip().splitlines()[-1] for _, e in failed})
    con.close()
    return problems, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", type=int, default=60)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between two kills")
    ap.add_argument("--seed", type=int, default=0, help="the study's sampler and the injector's choices")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="give up on the study after this many seconds")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mmpkd-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "soak.yaml").write_text(SPEC.format(recipes=args.recipes, seed=args.seed))
    db = work / "soak.duckdb"
    for p in work.glob("soak.duckdb*"):
        p.unlink()
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_AUTH_MODE="disabled")
    t0 = time.monotonic()
    driver = subprocess.Popen([sys.executable, "-m", "study.cli", "run", "soak.yaml", "--db", db.name, "--no-report",
                               "--cache-dir", str(work / "cache")], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    armed = threading.Event()  # from the first baseline's end: a kill there would leave no baseline to pair with

    def echo() -> None:
        for line in driver.stdout:
            lines.append(line.rstrip("\n"))
            print(f"[{time.monotonic() - t0:6.0f} s] {lines[-1]}", flush=True)
            if line.startswith(("baseline no distillation", "trial [", "baselines: 1 reused")):
                armed.set()

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    rng, kills = random.Random(args.seed), []
    next_kill = time.monotonic() + args.every
    while driver.poll() is None:
        if time.monotonic() - t0 > args.timeout:
            print(f"soak: the study did not finish within {args.timeout:.0f} s; stopping it", flush=True)
            os.killpg(driver.pid, signal.SIGTERM)
            driver.wait(timeout=60)
            break
        time.sleep(0.5)
        if not armed.is_set() or time.monotonic() < next_kill:
            continue
        workers = trial_workers(driver.pid)
        if not workers:  # preparing data, between trials, or a retried trial's actor still starting
            continue
        victim = rng.choice(workers)
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue
        kills.append(victim)
        print(f"[{time.monotonic() - t0:6.0f} s] soak: SIGKILL to trial worker {victim} (kill {len(kills)})",
              flush=True)
        next_kill = time.monotonic() + args.every
    reader.join(timeout=30)
    wall = time.monotonic() - t0
    retries = sum(1 for line in lines if "running it again from epoch 1" in line)
    problems = [f"the study exited with {driver.returncode}"] if driver.returncode else []
    counts: dict = {}
    if db.exists():
        more, counts = check(db, args.recipes)
        problems += more
    else:
        problems.append(f"no database at {db}")
    print(f"\nsoak: {args.recipes} recipes, {len(kills)} kills (one every {args.every:g} s), {retries} retries, "
          f"{counts.get('failed', 0)} failed, {counts.get('completed', 0)} completed, "
          f"{counts.get('pruned', 0)} pruned, "
          f"{counts.get('baselines', 0)} baseline(s); wall {wall:.0f} s")
    for cause in counts.get("causes", []):
        print(f"  failure cause: {cause}")
    for p in problems:
        print(f"  PROBLEM: {p}")
    print("soak: every check passed" if not problems else f"soak: {len(problems)} check(s) failed (work folder {work})")
    if not args.keep and not problems:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
