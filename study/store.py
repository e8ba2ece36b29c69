"""The DuckDB store. The driver is its only writer; each trial lands in one transaction.

Live reads: DuckDB lets no other process open a file that a writer holds, not even read-only. So
the writer *publishes* what it has committed: after a transaction it checkpoints and copies the
file to ``<db>.snapshot`` (written beside it, then renamed into place, so a reader never sees half
a copy). ``connect(path, read_only=True)`` falls back to that snapshot while the database is
locked, and ``live_note`` says how old it is. Publishing is budgeted: all copies together take at
most ``PUBLISH_SHARE`` of the time since the store was opened (the next copy is assumed to cost what
the last one did). A change the budget holds back goes out at the driver's next poll (every epoch
report; with Ray, every turn of Tune's loop) once the budget allows, or once it is ``MAX_STALE``
seconds old if copies then stay under ``STALE_SHARE`` of the time.

Tables: ``meta`` (schema version), ``studies``, ``trials`` (typed recipe columns + the whole
config as JSON), ``epochs`` (per-epoch losses and validation metrics), ``localization`` (per
trial x method x metric x image), ``evaluation`` (aggregates per trial x method x metric).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from study.errors import StoreError

if TYPE_CHECKING:
    import numpy
    import pyarrow

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS studies (
    name VARCHAR PRIMARY KEY, domain VARCHAR, spec_json JSON, spec_hash VARCHAR,
    status VARCHAR, created_at TIMESTAMP, finished_at TIMESTAMP, wall_seconds DOUBLE, planned_trials INTEGER);
CREATE TABLE IF NOT EXISTS trials (
    study VARCHAR, trial_id VARCHAR, number INTEGER, status VARCHAR, is_baseline BOOLEAN,
    domain VARCHAR, teacher VARCHAR, temperature DOUBLE, alpha DOUBLE, beta DOUBLE,
    attention_method VARCHAR, lr DOUBLE, weight_decay DOUBLE, epochs INTEGER, seed INTEGER,
    params_json JSON, config_json JSON, config_hash VARCHAR, baseline_key VARCHAR,
    val_objective DOUBLE, test_objective DOUBLE, val_auroc DOUBLE, test_auroc DOUBLE,
    teacher_json JSON, method_params_json JSON, data_path VARCHAR, epochs_done INTEGER, trial_seconds DOUBLE,
    gpu_mb DOUBLE, error VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP,
    PRIMARY KEY (study, trial_id));
CREATE TABLE IF NOT EXISTS epochs (
    study VARCHAR, trial_id VARCHAR, epoch INTEGER, loss DOUBLE, ce DOUBLE, kd DOUBLE, feat DOUBLE,
    lr DOUBLE, val_auroc DOUBLE, val_objective DOUBLE, seconds DOUBLE,
    PRIMARY KEY (study, trial_id, epoch));
CREATE TABLE IF NOT EXISTS localization (
    study VARCHAR, trial_id VARCHAR, split VARCHAR, method VARCHAR, metric VARCHAR,
    image_id VARCHAR, value DOUBLE);
CREATE TABLE IF NOT EXISTS evaluation (
    study VARCHAR, trial_id VARCHAR, split VARCHAR, method VARCHAR, metric VARCHAR,
    mean DOUBLE, n INTEGER, n_nan INTEGER);
CREATE TABLE IF NOT EXISTS maps (
    study VARCHAR, trial_id VARCHAR, method VARCHAR, image_id VARCHAR, h INTEGER, w INTEGER, map FLOAT[]);
CREATE TABLE IF NOT EXISTS gains (
    study VARCHAR, domain VARCHAR, trial_id VARCHAR, number INTEGER, seed INTEGER, teacher VARCHAR,
    temperature DOUBLE, alpha DOUBLE, beta DOUBLE, sampled_method VARCHAR, method VARCHAR, metric VARCHAR,
    n_images INTEGER, score DOUBLE, baseline DOUBLE, gain DOUBLE, model_ci_low DOUBLE, model_ci_high DOUBLE,
    model_p_value DOUBLE, model_test VARCHAR, model_p_holm DOUBLE);
CREATE TABLE IF NOT EXISTS recipe_gains (
    study VARCHAR, domain VARCHAR, number INTEGER, method VARCHAR, metric VARCHAR, unit VARCHAR, n INTEGER, df DOUBLE,
    recipes INTEGER, seeds INTEGER, images INTEGER, score DOUBLE, baseline DOUBLE, gain DOUBLE, ci_low DOUBLE,
    ci_high DOUBLE, p_value DOUBLE, p_holm DOUBLE, p_floor DOUBLE, reachable BOOLEAN);
CREATE OR REPLACE VIEW gains_by_image AS
    -- the baselines' rows first, materialised: a few thousand rows per baseline, so the join with every
    -- trial's rows builds its hash table on them (left to the optimiser, it built on the trials' millions)
    WITH b AS MATERIALIZED (
        SELECT config_hash, science_version, any_value(study) AS study, any_value(trial_id) AS trial_id FROM trials
        WHERE is_baseline AND status = 'completed' GROUP BY config_hash, science_version),
    bl AS MATERIALIZED (
        SELECT b.config_hash, b.science_version, l.method, l.metric, l.image_id, l.value
        FROM b JOIN localization l ON l.study = b.study AND l.trial_id = b.trial_id)
    SELECT t.study, t.domain, t.trial_id, t.number, t.seed, t.teacher, t.temperature, t.alpha, t.beta, t.lr,
           t.weight_decay, t.epochs, t.attention_method AS sampled_method, l.method, l.metric, l.image_id,
           l.value, bl.value AS baseline_value, l.value - bl.value AS gain,
           bl.image_id IS NOT NULL AS baseline_value_present
    FROM (SELECT * FROM trials t SEMI JOIN b ON b.config_hash = t.baseline_key
          AND b.science_version IS NOT DISTINCT FROM t.science_version) t
    JOIN localization l ON l.study = t.study AND l.trial_id = t.trial_id
    LEFT JOIN bl ON bl.config_hash = t.baseline_key AND bl.science_version IS NOT DISTINCT FROM t.science_version
          AND bl.method = l.method AND bl.metric = l.metric AND bl.image_id = l.image_id
    WHERE NOT t.is_baseline AND t.status = 'completed';
CREATE OR REPLACE VIEW trial_summary AS
    SELECT t.study, t.trial_id, t.number, t.status, t.is_baseline, t.domain, t.teacher, t.temperature,
           t.alpha, t.beta, t.attention_method, t.lr, t.val_objective, t.test_objective, t.val_auroc,
           t.test_auroc, t.epochs_done, t.trial_seconds, t.params_json
    FROM trials t;
"""

# columns added to schema 1 after its first databases were written: added in place when opened for writing
ADDED_COLUMNS = [("studies", "data_subset", "VARCHAR"), ("studies", "slots", "INTEGER"),
                 ("studies", "slot_seconds", "DOUBLE"), ("studies", "slot_utilisation", "DOUBLE"),
                 ("studies", "planned_trials", "INTEGER"), ("trials", "baseline_key", "VARCHAR"),
                 ("trials", "method_params_json", "JSON"),
                 ("trials", "data_path", "VARCHAR"), ("trials", "gpu_mb", "DOUBLE"),
                 ("trials", "science_version", "INTEGER"), ("trials", "engine_version", "VARCHAR")]

# per-model columns renamed for what they measure (this model on this test set, not the recipe)
RENAMED_COLUMNS = [("gains", "ci_low", "model_ci_low"), ("gains", "ci_high", "model_ci_high"),
                   ("gains", "p_value", "model_p_value"), ("gains", "test", "model_test"),
                   ("gains", "p_holm", "model_p_holm")]

PUBLISH_SHARE = 0.02  # at most this share of the driver's wall time goes to publishing snapshots
MAX_STALE, STALE_SHARE = 25.0, 0.10  # an unpublished change this old goes out if copies stay under 10%
EPOCH_COLUMNS = ["epoch", "loss", "ce", "kd", "feat", "lr", "val_auroc", "val_objective", "seconds"]


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


class Store:
    """A DuckDB file. Opened lazily, so the object can be pickled before it is used."""

    def __init__(self, path: str | Path, read_only: bool = False, publish: bool = True):
        self.path, self.read_only = str(path), read_only
        self.publishing = publish and not read_only and self.path != ":memory:"
        self._con = None
        self._dirty = False
        self._dirty_since = 0.0  # monotonic time of the oldest change not yet published
        self._opened = time.monotonic()
        self._last_cost = 0.0  # seconds the last copy took: what the next one is assumed to take
        self.publish_seconds = 0.0  # spent publishing, in all
        self.publishes = 0

    @property
    def con(self):
        if self._con is None:
            self._con = connect(self.path, self.read_only)
            self._opened = time.monotonic()
            if self.publishing:  # whatever snapshot lies there may be older than this file: replace it now
                self.publish(force=True)
        return self._con

    def close(self) -> None:
        if self._con is not None:
            if self._dirty:
                self.publish(force=True)
            self._con.close()
            self._con = None

    def __getstate__(self):
        return {**self.__dict__, "_con": None}

    # ------------------------------------------------------------------ live reads
    def changed(self) -> None:
        """A write was committed: publish it now, or at the next poll once the pace allows."""
        if not self._dirty:
            self._dirty, self._dirty_since = True, time.monotonic()
        self.poll()

    def poll(self) -> None:
        """Publish a committed change that is still unpublished, if the pace allows (the driver
        calls this at every epoch report, so a change waits seconds, not a whole trial)."""
        if self._dirty and self._affordable():
            self.publish()

    def _affordable(self) -> bool:
        now = time.monotonic()
        share = STALE_SHARE if self._dirty and now - self._dirty_since >= MAX_STALE else PUBLISH_SHARE
        return self.publish_seconds + self._last_cost <= share * (now - self._opened)

    def publish(self, force: bool = False) -> None:
        """Checkpoint, copy the file to ``<db>.snapshot`` and rename it into place. Never fatal:
        a study goes on if its snapshot cannot be written (readers then wait for the study)."""
        if not self.publishing or self._con is None or not (force or self._affordable()):
            return
        t0 = time.perf_counter()
        snap = snapshot_path(self.path)
        tmp = snap.with_name(f"{snap.name}.{os.getpid()}.tmp")
        try:
            self._con.execute("CHECKPOINT")
            # copied by a child process: a POSIX process that opens and closes the file itself loses
            # DuckDB's lock on it (fcntl locks belong to the process and go with any close of the file)
            subprocess.run(["cp", self.path, str(tmp)], check=True, capture_output=True, text=True)
            os.replace(tmp, snap)
        except Exception as err:  # a full disk, a read-only folder: the study matters more than its snapshot
            tmp.unlink(missing_ok=True)
            self.publishing = False
            why = (getattr(err, "stderr", None) or str(err) or type(err).__name__).strip().splitlines()[0]
            print(f"note: cannot publish a live snapshot of {self.path} ({why}); other "
                  "processes can read the database once the study ends")
            return
        cost = time.perf_counter() - t0
        self.publish_seconds += cost
        self.publishes += 1
        self._dirty = False
        self._last_cost = cost

    # ------------------------------------------------------------------ studies
    def study_exists(self, name: str) -> bool:
        return self.study_row(name) is not None

    def create_study(self, name: str, domain: str, spec_json: str, spec_hash: str, planned: int | None = None) -> None:
        """``planned``: the trials (recipes x seeds) the study will store, for progress lines."""
        self.con.execute("INSERT INTO studies (name, domain, spec_json, spec_hash, status, created_at, planned_trials)"
                         " VALUES (?, ?, ?, ?, 'running', ?, ?)", [name, domain, spec_json, spec_hash, now(), planned])
        self.publish(force=True)

    def delete_study(self, name: str) -> None:
        with self.transaction():
            for table in ("maps", "gains", "recipe_gains", "localization", "evaluation", "epochs", "trials"):
                self.con.execute(f"DELETE FROM {table} WHERE study = ?", [name])
            self.con.execute("DELETE FROM studies WHERE name = ?", [name])
        self.changed()

    def study_row(self, name: str) -> dict | None:
        row = self.con.execute("SELECT spec_json, spec_hash, status, wall_seconds FROM studies WHERE name = ?",
                               [name]).fetchone()
        return None if row is None else dict(zip(["spec_json", "spec_hash", "status", "wall_seconds"], row))

    def reopen_study(self, name: str, planned: int | None = None) -> None:
        self.con.execute("UPDATE studies SET status = 'running', finished_at = NULL, "
                         "planned_trials = coalesce(?, planned_trials) WHERE name = ?", [planned, name])
        self.publish(force=True)

    def resume_state(self, study: str) -> tuple[dict[int, dict], dict[int, dict]]:
        """For resuming a study that was stopped: drop every trial that was still running when the
        process died (a recipe counts as running if any of its seeds does) and every baseline that did
        not complete (it is run again), in one transaction, and
        return ``(finished, killed)``: recipe number -> {"params", "status", "value", "epochs"} for the
        finished ones (``epochs``: (epoch, validation objective averaged over the recipe's seeds), as the
        scheduler saw them), recipe number -> {"params"} for those to re-run."""
        rows = self.con.execute("""
            SELECT number, any_value(params_json), list(status), avg(val_objective)
            FROM trials WHERE study = ? AND NOT is_baseline GROUP BY number ORDER BY number""", [study]).fetchall()
        finished, killed = {}, {}
        for number, params, statuses, value in rows:
            entry = {"params": json.loads(params)}
            if "running" in statuses:
                killed[number] = entry
            else:
                status = "completed" if all(s == "completed" for s in statuses) else \
                         "failed" if "failed" in statuses else "pruned"
                finished[number] = {**entry, "status": status, "value": value, "epochs": []}
        for number, epoch, value in self.con.execute("""
                SELECT t.number, e.epoch, avg(e.val_objective) FROM epochs e
                JOIN trials t ON t.study = e.study AND t.trial_id = e.trial_id
                WHERE e.study = ? AND NOT t.is_baseline GROUP BY ALL ORDER BY ALL""", [study]).fetchall():
            if number in finished:
                finished[number]["epochs"].append((epoch, value))
        with self.transaction():
            # baselines that did not complete run again under the same trial id: their rows go too
            doomed = ("(SELECT trial_id FROM trials WHERE study = ? AND (status = 'running' OR number IN ({}) "
                      "OR (is_baseline AND status <> 'completed')))").format(",".join(str(n) for n in killed) or "NULL")
            for table in ("maps", "gains", "localization", "evaluation", "epochs"):
                self.con.execute(f"DELETE FROM {table} WHERE study = ? AND trial_id IN {doomed}", [study, study])
            self.con.execute("DELETE FROM recipe_gains WHERE study = ?", [study])
            self.con.execute(f"DELETE FROM trials WHERE study = ? AND trial_id IN {doomed}", [study, study])
        self.changed()
        return finished, killed

    def finish_study(self, name: str, status: str, wall_seconds: float, slots: int | None = None) -> None:
        """The study's end. With ``slots`` (trials the executor ran at once), also its slot utilisation:
        the seconds of every trial it ran -- completed, pruned, failed, its baselines -- over slots x wall."""
        self.con.execute("UPDATE studies SET status = ?, finished_at = ?, wall_seconds = ? WHERE name = ?",
                         [status, now(), wall_seconds, name])
        if slots:
            self.con.execute("""
                UPDATE studies SET slots = ?, slot_seconds = t.s,
                       slot_utilisation = t.s / (? * greatest(?, 1e-9))
                FROM (SELECT coalesce(sum(trial_seconds), 0) AS s FROM trials WHERE study = ?) t
                WHERE name = ?""", [slots, slots, wall_seconds, name, name])
        self.publish(force=True)

    def set_data_subset(self, name: str, subset: str) -> None:
        """The training subset the study's data took (data.options.max_train), in words; "" for all."""
        self.con.execute("UPDATE studies SET data_subset = ? WHERE name = ?", [subset or None, name])
        self.changed()

    def utilisation(self, name: str) -> tuple | None:
        """(slot utilisation, trial seconds, slots, wall seconds) of a finished study, if recorded."""
        row = self.con.execute("SELECT slot_utilisation, slot_seconds, slots, wall_seconds FROM studies WHERE name = ?",
                               [name]).fetchone()
        return None if row is None or row[0] is None else row

    # ------------------------------------------------------------------ trials
    def transaction(self):
        return _Transaction(self.con)

    def trial_started(self, study: str, trial_id: str, number: int | None, config: dict, params: dict,
                      config_hash: str, baseline_key: str | None) -> None:
        """A new row in state 'running'. ``baseline_key`` is the config hash of the trial's matched
        baseline; a baseline itself has none. The row records the science and package version of the
        engine that runs it (the worker's, once it reports its result)."""
        from mmpkd_core.version import SCIENCE_VERSION, engine_version

        s = config["student"]
        is_base = baseline_key is None
        if is_base:  # a baseline that failed earlier in this study runs again under the same trial id
            self.drop_unfinished(study, trial_id)
        self.con.execute(
            "INSERT INTO trials (study, trial_id, number, status, is_baseline, domain, teacher, temperature, alpha,"
            " beta, attention_method, lr, weight_decay, epochs, seed, params_json, config_json, config_hash,"
            " baseline_key, started_at, science_version, engine_version)"
            " VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [study, trial_id, number, is_base, config["domain"], None if is_base else config["teacher"],
             None if is_base else config["temperature"], config["alpha"], config["beta"],
             None if is_base else config["attention_method"], s["lr"], s["weight_decay"], s["epochs"],
             config["seed"], json.dumps(params), json.dumps(config), config_hash, baseline_key, now(),
             SCIENCE_VERSION, engine_version()])
        self.changed()

    def drop_unfinished(self, study: str, trial_id: str) -> None:
        """A trial's row and everything stored with it, unless it completed (one transaction)."""
        doomed = "(SELECT trial_id FROM trials WHERE study = ? AND trial_id = ? AND status <> 'completed')"
        with self.transaction():
            for table in ("maps", "gains", "localization", "evaluation", "epochs", "trials"):
                self.con.execute(f"DELETE FROM {table} WHERE study = ? AND trial_id IN {doomed}",
                                 [study, study, trial_id])

    def completed_baselines(self, science_version: int) -> dict[str, set]:
        """Config hash -> the science versions of its completed baselines (None: from before versions)."""
        out: dict[str, set] = {}
        for h, v in self.con.execute("SELECT DISTINCT config_hash, science_version FROM trials "
                                     "WHERE is_baseline AND status = 'completed'").fetchall():
            out.setdefault(h, set()).add(v)
        return out

    def current_baselines(self) -> set[str]:
        """Config hashes of the baselines this engine's science version has completed."""
        from mmpkd_core.version import SCIENCE_VERSION

        return {h for h, vs in self.completed_baselines(SCIENCE_VERSION).items() if SCIENCE_VERSION in vs}

    def science_versions(self, study: str) -> set:
        """The science versions the study's trials were made by."""
        return {r[0] for r in self.con.execute("SELECT DISTINCT science_version FROM trials WHERE study = ?",
                                               [study]).fetchall()}

    def trial_finished(self, study: str, trial_id: str, status: str, epochs: list[dict],
                       result: dict | None = None, error: str | None = None, seconds: float | None = None) -> None:
        """The trial's final state, its epochs and its per-image scores, in one transaction.
        ``seconds``: what the trial cost as the Recorder knows it (a pruned trial's worker seconds, a failed
        trial's wall time), stored where the worker's result has no ``trial_seconds``."""
        import pyarrow as pa

        r = result or {}
        with self.transaction():
            self.con.execute(
                "UPDATE trials SET status = ?, val_objective = ?, test_objective = ?, val_auroc = ?, test_auroc = ?,"
                " teacher_json = ?, method_params_json = ?, data_path = ?, epochs_done = ?, trial_seconds = ?,"
                " gpu_mb = ?, error = ?,"
                " finished_at = ?"
                " WHERE study = ? AND trial_id = ?",
                [status, _num(r.get("val_objective", epochs[-1]["val_objective"] if epochs else None)),
                 _num(r.get("test_objective")), _num(r.get("val_auroc", epochs[-1]["val_auroc"] if epochs else None)),
                 _num(r.get("test_auroc")), json.dumps(r.get("teacher_metrics", {})),
                 json.dumps(r.get("method_params", {})), r.get("data_path"), len(epochs),
                 _num(r["trial_seconds"] if r.get("trial_seconds") is not None else seconds), _num(r.get("gpu_mb")),
                 error, now(), study, trial_id])
            if "science_version" in r:  # the worker's own engine made these numbers
                self.con.execute("UPDATE trials SET science_version = ?, engine_version = ? WHERE study = ? AND "
                                 "trial_id = ?", [r["science_version"], r.get("engine_version"), study, trial_id])
            if epochs:
                ep = pa.table({"study": [study] * len(epochs), "trial_id": [trial_id] * len(epochs),  # noqa: F841
                               **{c: pa.array([row.get(c) for row in epochs],
                                              type=pa.int32() if c == "epoch" else pa.float64())
                                  for c in EPOCH_COLUMNS}})
                self.con.execute("INSERT INTO epochs SELECT * FROM ep")
            if result:
                methods, metrics, values = score_matrix(result)
                loc = localization_table(study, trial_id, result["image_ids"], methods, metrics, values)  # noqa: F841
                self.con.execute("INSERT INTO localization SELECT * FROM loc")
                agg = evaluation_table(study, trial_id, methods, metrics, values)  # noqa: F841
                self.con.execute("INSERT INTO evaluation SELECT * FROM agg")
                if result.get("maps"):
                    map_rows = maps_table(study, trial_id, result)  # noqa: F841
                    self.con.execute("INSERT INTO maps SELECT * FROM map_rows")
        self.changed()


def score_matrix(result: dict) -> tuple[tuple[str, ...], tuple[str, ...], "numpy.ndarray"]:
    """The trial's per-image scores: the method and metric of each key ('method|metric') and one row of
    values per key, in the order of ``image_ids`` (a missing score is NaN)."""
    import numpy as np

    keys = list(result["scores"])
    values = np.array([result["scores"][k] for k in keys], dtype=np.float64)  # None -> NaN
    methods, metrics = zip(*(k.split("|") for k in keys)) if keys else ((), ())
    return methods, metrics, values.reshape(len(keys), len(result["image_ids"]))


def localization_table(study: str, trial_id: str, ids: list, methods: tuple, metrics: tuple,
                       values) -> "pyarrow.Table":
    """The scores as rows of ``localization`` (a missing score NULL), one Arrow table built from columns,
    not row by row: the single writer's time per finished trial."""
    import numpy as np
    import pyarrow as pa

    n, rows = len(ids), values.size
    return pa.table({
        "study": pa.array([study] * rows, pa.string()), "trial_id": pa.array([trial_id] * rows, pa.string()),
        "split": pa.array(["test"] * rows, pa.string()),
        "method": pa.array(np.repeat(np.array(methods, dtype=object), n), pa.string()),
        "metric": pa.array(np.repeat(np.array(metrics, dtype=object), n), pa.string()),
        "image_id": pa.array(list(ids) * len(methods), pa.string()),
        "value": pa.array(values.reshape(-1), pa.float64(), from_pandas=True),  # NaN -> NULL
    })


def evaluation_table(study: str, trial_id: str, methods: tuple, metrics: tuple, values):
    """Rows of ``evaluation``: per method and metric (sorted), the mean of the scores present, their count
    and how many are missing. The mean is pandas' grouped by the method and metric names, exactly as the
    store has always computed it (grouped by integer codes, pandas sums in another order: the last bits
    differ)."""
    import numpy as np
    import pandas as pd

    n = values.shape[1]
    frame = pd.DataFrame({"method": np.repeat(np.array(methods, dtype=object), n),
                          "metric": np.repeat(np.array(metrics, dtype=object), n), "value": values.reshape(-1)})
    mean = frame.groupby(["method", "metric"], sort=True)["value"].mean()
    row = {k: i for i, k in enumerate(zip(methods, metrics))}
    order = [row[k] for k in mean.index]
    return pd.DataFrame({"study": study, "trial_id": trial_id, "split": "test",
                         "method": [methods[i] for i in order], "metric": [metrics[i] for i in order],
                         "mean": mean.to_numpy(), "n": np.full(len(order), n, dtype=np.int32),
                         "n_nan": np.isnan(values[order]).sum(axis=1).astype(np.int32)})


def maps_table(study: str, trial_id: str, result: dict) -> "pyarrow.Table":
    """The gallery maps as rows of ``maps`` (each method's maps belong to the first image ids, in order),
    each a FLOAT[] of h x w, converted from one float32 array."""
    from itertools import chain

    import numpy as np
    import pyarrow as pa

    h, w = result["grid"]
    ids = list(result["image_ids"])
    per_method = [(m, rows[:len(ids)]) for m, rows in result["maps"].items()]
    maps = [row for _, rows in per_method for row in rows]
    sizes = np.fromiter((len(row) for row in maps), dtype=np.int64, count=len(maps))
    flat = np.fromiter(chain.from_iterable(maps), dtype=np.float32, count=int(sizes.sum()))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    n = len(maps)
    return pa.table({"study": pa.array([study] * n, pa.string()), "trial_id": pa.array([trial_id] * n, pa.string()),
                     "method": pa.array([m for m, rows in per_method for _ in rows], pa.string()),
                     "image_id": pa.array([i for _, rows in per_method for i in ids[:len(rows)]], pa.string()),
                     "h": pa.array([h] * n, pa.int32()), "w": pa.array([w] * n, pa.int32()),
                     "map": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))})


class _Transaction:
    def __init__(self, con):
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN TRANSACTION")
        return self.con

    def __exit__(self, exc_type, *_):
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def has_column(con, table: str, column: str) -> bool:
    """Whether the database has the column: one written before it was added and opened read-only
    (so not migrated) has not."""
    return bool(con.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
                            [table, column]).fetchone()[0])


def snapshot_path(path: str | Path) -> Path:
    """Where the writer publishes what it has committed, for readers while it holds the file."""
    return Path(f"{path}.snapshot")


LIVE_NOTES: dict[str, str] = {}  # database path -> what the last read-only connect read instead of it


def live_note(path: str | Path) -> str | None:
    """For a read-only connection that fell back to the live snapshot: one line saying how old its
    state is and how far the running studies are; None if the database itself was read."""
    return LIVE_NOTES.get(str(path))


def _snapshot_note(con, snap: Path) -> str:
    stamp = datetime.fromtimestamp(snap.stat().st_mtime).strftime("%H:%M:%S")
    age = max(0.0, time.time() - snap.stat().st_mtime)
    rows = con.execute("""
        SELECT s.name, any_value(s.planned_trials),
               count(t.trial_id) FILTER (WHERE t.status NOT IN ('running') AND NOT t.is_baseline),
               count(t.trial_id) FILTER (WHERE t.status = 'running' AND NOT t.is_baseline),
               count(t.trial_id) FILTER (WHERE t.status = 'running' AND t.is_baseline)
        FROM studies s LEFT JOIN trials t ON t.study = s.name
        WHERE s.status = 'running' GROUP BY s.name ORDER BY s.name""").fetchall()
    parts = [f"{name}: {done} of {planned if planned is not None else '?'} trials ({running} running"
             + (f", {base} baseline{'s' if base > 1 else ''} beside them)" if base else ")")
             for name, planned, done, running, base in rows]
    return (f"as of {stamp} ({age:.0f} s ago): {'; '.join(parts) or 'no study running'} -- the database is held "
            f"by a running study; this is the last state it published ({snap.name})")


def connect(path: str, read_only: bool = False):
    import duckdb

    path = str(path)
    if read_only and not Path(path).exists():
        raise StoreError(f"database '{path}' not found; run a study first or pass --db FILE")
    LIVE_NOTES.pop(path, None)
    try:
        con = duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as err:
        if "lock" not in str(err).lower():
            raise StoreError(f"cannot open database '{path}': {str(err).splitlines()[0]}") from None
        snap = snapshot_path(path)
        if not read_only or not snap.exists():
            raise StoreError(f"database '{path}' is in use by another writing process (a study still running?); "
                             "wait for it to finish or use --db OTHER.duckdb") from None
        con = _open_snapshot(snap)
        LIVE_NOTES[path] = _snapshot_note(con, snap)
        path = str(snap)
    if read_only:
        con.execute("SET enable_progress_bar = false")
        _check_version(con, path)
        return con
    con.execute("SET enable_progress_bar = false")
    con.execute(SCHEMA.split("CREATE OR REPLACE VIEW")[0])  # tables first: views may name added columns
    for table, column, kind in ADDED_COLUMNS:
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
    for table, old, new in RENAMED_COLUMNS:
        if has_column(con, table, old):
            con.execute(f'ALTER TABLE {table} RENAME COLUMN "{old}" TO {new}')
    con.execute(SCHEMA)
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if version is None:
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    else:
        _check_version(con, path)
    return con


def _open_snapshot(snap: Path):
    """The published snapshot, read-only. The writer renames a new one into place at any moment;
    an open connection keeps reading the file it opened."""
    import duckdb

    for attempt in range(3):
        try:
            return duckdb.connect(str(snap), read_only=True)
        except duckdb.IOException as err:  # renamed away between the exists() and the open: take the next
            if attempt == 2:
                raise StoreError(f"cannot open the live snapshot '{snap}': {str(err).splitlines()[0]}") from None
            time.sleep(0.05)


def _check_version(con, path: str) -> None:
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except Exception:
        raise StoreError(f"'{path}' is not a study database (no meta table)") from None
    if row is None or int(row[0]) != SCHEMA_VERSION:
        raise StoreError(f"'{path}' has store schema {row[0] if row else '?'}, this engine reads {SCHEMA_VERSION}; "
                         "use a new --db file")
