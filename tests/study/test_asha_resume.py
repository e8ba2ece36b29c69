"""ASHA survives a resume: a study killed while the recipe that ASHA stopped first was training, then
resumed, makes the same stop decisions, recipe by recipe, as the same spec run without a kill. Without
the stored rungs the resumed recipe met empty rungs and ran to the end (measured before the fix, both
executors)."""
import os
import shutil
import subprocess
import sys
import textwrap

import duckdb
import pytest

SPEC = textwrap.dedent("""\
    name: halving
    domain: synthetic_ddsm
    data: {{n_train: 100, n_val: 40, n_test: 40, image_size: 32, seed: 0}}
    student: {{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, epochs: 3, batch_size: 32}}
    search_space:
      teacher: {{type: categorical, choices: [mlp]}}
      alpha: {{type: float, low: 0.05, high: 1.0}}
      temperature: {{type: float, low: 1.0, high: 8.0, log: true}}
      lr: {{type: float, low: 1.0e-4, high: 3.0e-3, log: true}}
    objective: {{metric: relevance_mass, mode: max}}
    evaluation: {{methods: [raw_cls], metrics: [relevance_mass]}}
    executor: {{kind: {kind}, trials: 9, max_concurrent: 1, sample_batch: 1, scheduler: asha, grace_period: 1, seed: 5}}
    """)


def run(cwd, cache_dir, db):
    return subprocess.run([sys.executable, "-m", "study.cli", "run", "s.yaml", "--db", db, "--no-report"], cwd=cwd,
                          env=dict(os.environ, MMPKD_CACHE=cache_dir), capture_output=True, text=True, timeout=900)


def decisions(db) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT number, status, epochs_done FROM trials WHERE NOT is_baseline ORDER BY number").fetchall()
    con.close()
    return rows


def kill_after(db, k: int) -> None:
    """The state a kill leaves while recipe k trains: recipes before it stored, recipe k 'running' with
    nothing of its own yet, later ones never started, the study 'running'."""
    con = duckdb.connect(str(db))
    later = "(SELECT trial_id FROM trials WHERE NOT is_baseline AND number >= ?)"
    for table in ("maps", "gains", "localization", "evaluation", "epochs"):
        con.execute(f"DELETE FROM {table} WHERE trial_id IN {later}", [k])
    con.execute("DELETE FROM recipe_gains")
    con.execute("DELETE FROM trials WHERE NOT is_baseline AND number > ?", [k])
    con.execute("UPDATE trials SET status = 'running', val_objective = NULL, test_objective = NULL, epochs_done = NULL,"
                " trial_seconds = NULL, finished_at = NULL WHERE NOT is_baseline AND number = ?", [k])
    con.execute("UPDATE studies SET status = 'running', finished_at = NULL, wall_seconds = NULL")
    con.close()


@pytest.mark.parametrize("kind", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_a_resumed_study_makes_the_same_stop_decisions(tmp_path, cache_dir, kind):
    (tmp_path / "s.yaml").write_text(SPEC.format(kind=kind))
    out = run(tmp_path, cache_dir, "whole.duckdb")
    assert out.returncode == 0, out.stderr[-2000:]
    whole = decisions(tmp_path / "whole.duckdb")
    stopped = [n for n, status, _ in whole if status == "pruned"]
    assert len(whole) == 9 and stopped and 0 < stopped[0] < 8, whole  # ASHA stopped a recipe with recipes to come
    k = stopped[0]  # killed while the first recipe ASHA stopped trained: it must be stopped again, at the same rung
    shutil.copy(tmp_path / "whole.duckdb", tmp_path / "killed.duckdb")
    kill_after(tmp_path / "killed.duckdb", k)
    out = run(tmp_path, cache_dir, "killed.duckdb")
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resuming halving: {k} recipes kept, 1 interrupted ones run again" in out.stdout
    assert decisions(tmp_path / "killed.duckdb") == whole  # stop decisions and the epochs they came at, trial by trial


@pytest.mark.slow
def test_both_executors_stop_the_same_recipes_at_the_same_epochs(tmp_path, cache_dir):
    """One trial at a time, the local executor's pruner and Ray's ASHAScheduler apply one rule
    (``study.asha``): the same recipes are stopped, at the same epochs."""
    runs = {}
    for kind in ("local", "ray"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "s.yaml").write_text(SPEC.format(kind=kind))
        out = run(tmp_path / kind, cache_dir, "s.duckdb")
        assert out.returncode == 0, out.stderr[-2000:]
        runs[kind] = decisions(tmp_path / kind / "s.duckdb")
    statuses = [status for _, status, _ in runs["local"]]
    assert len(runs["local"]) == 9 and "pruned" in statuses and "completed" in statuses, runs["local"]
    assert runs["ray"] == runs["local"]
