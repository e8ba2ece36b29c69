"""What a study writes beside its DuckDB file, from the same records that go into it.

- Every study: an Optuna storage, a journal file beside the database (``optuna_storage_path``), with
  one Optuna study per engine study and one Optuna trial per stored trial row (baselines aside).
  ``study dashboard`` serves it with optuna-dashboard, live while a study runs.
- ``tracking: {mlflow: ..., tensorboard: true}``: MLflow runs and TensorBoard event files. The Ray
  executor passes Ray Tune's own logger callbacks (``ray_callbacks``); the local executor writes the
  same records here, one run per recipe (and per baseline), from the reports the driver receives.

The driver's ``Recorder`` (study.recorder) calls ``Trackers.epoch`` with every epoch report of a
recipe and ``Trackers.finished`` once a trial's row is committed; a tracker reads what it needs from
that row. A tracker that fails mid-study is dropped with a note: the database is the record, the
trackers are views of it.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from contextlib import contextmanager
from datetime import timezone
from pathlib import Path

from study.errors import SpecError

# Ray Tune's TBXLoggerCallback tag prefix, kept for local runs: both executors' event files read the same
TB_PREFIX = "ray/tune"
# how Ray's MLflowLoggerCallback ends a run (a trial that ASHA stopped is FINISHED there too)
MLFLOW_STATUS = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED"}


def optuna_storage_path(db_path: str | Path) -> Path:
    """``studies.duckdb`` -> ``studies.optuna.log``."""
    return Path(db_path).with_suffix(".optuna.log")


def optuna_storage(path: str | Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def recipe_id(trial_id: str) -> str:
    """The recipe a stored row belongs to: ``0003`` for ``0003`` and ``0003.s1``; a baseline is its own."""
    return trial_id if trial_id.startswith("baseline-") else trial_id.split(".s")[0]


def with_test_means(row: dict) -> dict:
    """A report with flat ``test_objective`` and ``test_auroc`` (means over seeds) added when it carries
    the seeds' results: trackers that log flat numbers then record the final test metrics."""
    results = row.get("results")
    if not results:
        return row
    means = {k: sum(float(r[k]) for r in results) / len(results) for k in ("test_objective", "test_auroc")
             if all(r.get(k) is not None for r in results)}
    return {**row, **means}


def flat_metrics(row: dict, prefix: str = "") -> dict[str, float]:
    """A report's numbers, nested dicts flattened with '/' as Ray Tune's logger callbacks flatten them;
    lists (the seeds' results) and NaNs left out."""
    out: dict[str, float] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update(flat_metrics(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v):
            out[f"{prefix}{k}"] = float(v)
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


# ---------------------------------------------------------------- the stored row a tracker reads

ROW_COLUMNS = ["trial_id", "number", "status", "is_baseline", "seed", "attention_method", "params_json",
               "config_json", "baseline_key", "science_version", "val_objective", "test_objective", "val_auroc",
               "test_auroc", "trial_seconds", "error", "started_at", "finished_at"]

GAIN_SQL = """
WITH b AS (SELECT study, trial_id FROM trials WHERE is_baseline AND status = 'completed' AND config_hash = $key
           AND science_version IS NOT DISTINCT FROM $version LIMIT 1)
SELECT avg(l.value - bl.value) FILTER (WHERE NOT isnan(l.value - bl.value))
FROM localization l JOIN b ON TRUE
JOIN localization bl ON bl.study = b.study AND bl.trial_id = b.trial_id AND bl.method = l.method
     AND bl.metric = l.metric AND bl.image_id = l.image_id
WHERE l.study = $study AND l.trial_id = $trial AND l.method = $method AND l.metric = $metric"""


def stored_row(con, study: str, trial_id: str) -> dict:
    row = con.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM trials WHERE study = ? AND trial_id = ?",
                      [study, trial_id]).fetchone()
    return dict(zip(ROW_COLUMNS, row))


def stored_gain(con, study: str, row: dict, metric: str) -> float | None:
    """The objective metric's mean test gain over the matched baseline, image by image, for the trial's
    sampled method (None until that baseline is stored): two trials' rows of ``localization``, not the
    ``gains_by_image`` view over every trial."""
    if row["status"] != "completed" or row["baseline_key"] is None:
        return None
    (gain,) = con.execute(GAIN_SQL, {"key": row["baseline_key"], "version": row["science_version"], "study": study,
                                     "trial": row["trial_id"], "method": row["attention_method"],
                                     "metric": metric}).fetchone()
    return gain


# ---------------------------------------------------------------- Optuna: the dashboard's storage

def _distribution(dim):
    import optuna.distributions as od

    from study.spec import CategoricalDist, FloatDist

    if isinstance(dim, CategoricalDist):
        return od.CategoricalDistribution(dim.choices)
    if isinstance(dim, FloatDist):
        return od.FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    return od.IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)


def distributions(dims: dict, params: dict) -> dict:
    """Each parameter's distribution from the spec's search space; a value outside it (a dimension the
    space does not hold) is kept as a one-choice categorical rather than dropped."""
    import optuna.distributions as od

    out = {}
    for name, value in params.items():
        dist = _distribution(dims[name]) if name in dims else None
        try:
            fits = dist is not None and dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError):
            fits = False
        out[name] = dist if fits else od.CategoricalDistribution([value])
    return out


def optuna_trial(row: dict, epochs: list[tuple], gain: float | None, dims: dict):
    """One stored trial row as an Optuna trial: state from the engine's status, the validation objective
    as its value (completed only), per-epoch validation objectives as intermediate values."""
    import optuna

    State = optuna.trial.TrialState
    state = {"completed": State.COMPLETE, "pruned": State.PRUNED}.get(row["status"], State.FAIL)
    value = row["val_objective"] if state == State.COMPLETE else None
    error = (row["error"] or "").strip().splitlines()[-1] if row["error"] else None
    if state == State.COMPLETE and (value is None or math.isnan(value)):
        state, error = State.FAIL, "completed without a validation objective"
    attrs = {"trial_id": row["trial_id"], "recipe": row["number"], "seed": row["seed"],
             "test_objective": row["test_objective"], "test_auroc": row["test_auroc"], "val_auroc": row["val_auroc"],
             "trial_seconds": row["trial_seconds"], "gain": gain, "error": error}
    params = json.loads(row["params_json"])
    trial = optuna.trial.create_trial(
        state=state, value=value if state == State.COMPLETE else None, params=params,
        distributions=distributions(dims, params),
        intermediate_values={int(e): float(v) for e, v in epochs if v is not None},
        user_attrs={k: v for k, v in attrs.items() if v is not None and not (isinstance(v, float) and math.isnan(v))})
    if row["started_at"] and row["finished_at"]:  # the store keeps UTC; Optuna, local time
        trial.datetime_start, trial.datetime_complete = _local(row["started_at"]), _local(row["finished_at"])
    return trial


def _local(utc):
    return utc.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


class OptunaMirror:
    """The study's trials in an Optuna storage beside the database, added as each row is committed."""

    name = "the Optuna storage"

    def __init__(self, path: Path, spec, store):
        self.path, self.study_name, self.store = path, spec.name, store
        self.dims, self.metric = spec.dims(), spec.objective.metric
        self.direction = "maximize" if spec.objective.mode == "max" else "minimize"
        self.user_attrs = {"domain": spec.domain, "design": spec.design, "objective": f"val {spec.objective.metric}",
                           "database": str(Path(store.path).resolve())}
        self._study = None

    def __getstate__(self):  # Ray Tune pickles the driver's callbacks; the open storage stays behind
        return {**self.__dict__, "_study": None}

    @property
    def study(self):
        if self._study is None:
            import optuna

            self._study = optuna.load_study(study_name=self.study_name, storage=optuna_storage(self.path))
        return self._study

    def open(self, resume: bool) -> None:
        """A new study replaces any Optuna study of its name. A resumed one keeps its Optuna study and
        adds the stored trials it lacks; one that holds a trial the database no longer has (its recipe
        was interrupted and runs again) is rebuilt from the database, so nothing appears twice."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna_storage(self.path)
        stored = [r[0] for r in self.store.con.execute(
            "SELECT trial_id FROM trials WHERE study = ? AND NOT is_baseline AND status <> 'running' "
            "ORDER BY finished_at, trial_id", [self.study_name]).fetchall()] if resume else []
        exists = any(s.study_name == self.study_name for s in storage.get_all_studies())
        have: list = []
        if exists and resume:
            have = [t.user_attrs.get("trial_id") for t in
                    optuna.load_study(study_name=self.study_name, storage=storage).get_trials(deepcopy=False)]
        if exists and (not resume or len(set(have)) < len(have) or set(have) - set(stored)):
            optuna.delete_study(study_name=self.study_name, storage=storage)
            exists, have = False, []
        if not exists:
            study = optuna.create_study(study_name=self.study_name, storage=storage, direction=self.direction)
            for k, v in self.user_attrs.items():
                study.set_user_attr(k, v)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental in Optuna 3-5
                study.set_metric_names([self.user_attrs["objective"]])
        self._study = None
        for tid in stored:
            if tid not in have:
                self.finished(stored_row(self.store.con, self.study_name, tid))

    def epoch(self, trial_ids: list[str], row: dict) -> None:
        pass

    def finished(self, row: dict) -> None:
        if row["is_baseline"] or row["status"] == "running":
            return
        con = self.store.con
        epochs = con.execute("SELECT epoch, val_objective FROM epochs WHERE study = ? AND trial_id = ? ORDER BY epoch",
                             [self.study_name, row["trial_id"]]).fetchall()
        self.study.add_trial(optuna_trial(row, epochs, stored_gain(con, self.study_name, row, self.metric), self.dims))


# ---------------------------------------------------------------- MLflow

def mlflow_uri(uri: str) -> str:
    """A relative SQLite path made absolute (from the working directory), so every reader finds one file."""
    head = "sqlite:///"
    if uri.startswith(head) and not uri.startswith(head + "/"):
        return head + str(Path(uri[len(head):]).resolve())
    return uri


def experiment_name(spec) -> str:
    return spec.tracking.mlflow.experiment or spec.name


@contextmanager
def _no_http_retries():
    """An unreachable tracking server answers within seconds, not after MLflow's minutes of retries."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _quiet_mlflow() -> None:
    import logging

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


def open_mlflow(spec):
    """``(client, experiment_id)``: the tracking store opened and the experiment made if it is new, with
    its artifacts beside a SQLite store. Anything that fails is the spec's tracking URI, named."""
    import mlflow

    uri, name = mlflow_uri(spec.tracking.mlflow.tracking_uri), experiment_name(spec)
    _quiet_mlflow()
    try:
        with _no_http_retries():
            client = mlflow.MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name(name)
            if exp is None:
                where = None
                if uri.startswith("sqlite:///"):
                    db = Path(uri[len("sqlite:///"):])
                    where = db.with_name(f"{db.stem}-artifacts").as_uri()
                return client, client.create_experiment(name, artifact_location=where)
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SpecError("tracking.mlflow.tracking_uri", f"cannot open {spec.tracking.mlflow.tracking_uri} "
                                                        f"({reason[:300]})") from None
    if exp.lifecycle_stage == "deleted":
        raise SpecError("tracking.mlflow.experiment", f"MLflow experiment '{name}' is deleted; restore it "
                                                      "('mlflow experiments restore') or name another")
    return client, exp.experiment_id


class MlflowRuns:
    """The local executor's MLflow runs, made as Ray Tune's MLflowLoggerCallback makes them for the Ray
    executor: one run per recipe (per baseline) named after it, tags ``study`` and ``trial_name``, its
    config as params, every epoch report's numbers at step = epoch (the last one with the test means),
    FINISHED (or FAILED) at the end."""

    name = "MLflow"

    def __init__(self, spec, store):
        self.spec, self.study_name, self.store = spec, spec.name, store
        self.runs: dict[str, str] = {}  # recipe id -> open run id
        self.closed: set[str] = set()
        self._client = None

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    def _run(self, trial_id: str) -> str:
        rid = recipe_id(trial_id)
        if rid not in self.runs:
            from mlflow.entities import Param

            if self._client is None:
                self._client, self.experiment_id = open_mlflow(self.spec)
            run = self._client.create_run(self.experiment_id, run_name=rid,
                                          tags={"study": self.study_name, "trial_name": rid})
            self.runs[rid] = run.info.run_id
            row = stored_row(self.store.con, self.study_name, trial_id)
            config = ({"_baseline": json.loads(row["config_json"])} if row["is_baseline"] else
                      {**json.loads(row["params_json"]), "_recipe": row["number"]})
            self._client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in _flat(config).items()])
        return self.runs[rid]

    def epoch(self, trial_ids: list[str], row: dict) -> None:
        from mlflow.entities import Metric

        run_id, now = self._run(trial_ids[0]), int(time.time() * 1000)
        self._client.log_batch(run_id, metrics=[Metric(k, v, now, int(row["epoch"]))
                                                for k, v in flat_metrics(row).items()])

    def finished(self, row: dict) -> None:
        rid = recipe_id(row["trial_id"])
        if rid in self.closed:  # the recipe's other seeds: one run per recipe
            return
        run_id = self._run(row["trial_id"])
        self._client.set_terminated(run_id, MLFLOW_STATUS.get(row["status"], "FAILED"))
        self.closed.add(rid)
        del self.runs[rid]


def log_report(specs: list, report: Path, say) -> None:
    """The study's HTML report as an artifact of its study-level MLflow run (tag ``level: study``, one per
    study and experiment, reused when the report is written again)."""
    for spec in [s for s in specs if s.tracking.mlflow is not None]:
        try:
            _log_report(spec, report)
        except Exception as err:  # the study is stored and its report written; only the copy in MLflow is missing
            say(f"note: the report was not logged to MLflow ({(str(err).strip().splitlines() or [''])[0][:200]})")
            continue
        say(f"mlflow:   report logged to run '{spec.name}' of experiment '{experiment_name(spec)}'")


def _log_report(spec, report: Path) -> None:
    client, exp_id = open_mlflow(spec)
    found = client.search_runs([exp_id], f"tags.study = '{spec.name}' AND tags.level = 'study'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        from mlflow.entities import Param

        run_id = client.create_run(exp_id, run_name=spec.name, tags={"study": spec.name, "level": "study"}).info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in {
            "domain": spec.domain, "design": spec.design, "objective": spec.objective.metric,
            "mode": spec.objective.mode, "executor": spec.executor.kind, "seeds": spec.seed_list()}.items()])
    client.log_artifact(run_id, str(report))
    client.set_terminated(run_id, "FINISHED")


# ---------------------------------------------------------------- TensorBoard

def tensorboard_root(spec, cache_dir: str) -> Path:
    """Where Ray Tune keeps its trial folders (``executor.storage``), whose event files the local executor
    writes too: ``<study>/`` for the recipes, ``<study>-baselines/`` for the baselines."""
    return Path(storage(spec, cache_dir))


def storage(spec, cache_dir: str) -> str:
    """Ray Tune's trial folders: ``executor.storage`` (on a cluster, a path every node can reach), else
    ``<cache>/ray_results``."""
    return str(Path(spec.executor.storage).resolve()) if spec.executor.storage else str(Path(cache_dir) / "ray_results")


class TensorBoardRuns:
    """The local executor's event files, as Ray Tune's TBXLoggerCallback writes them: one folder per recipe
    (per baseline), every epoch report's numbers as scalars ``ray/tune/<key>`` at step = epoch."""

    name = "TensorBoard"

    def __init__(self, root: Path, study: str):
        self.root, self.study_name = root, study
        self.stamp = time.strftime("%Y-%m-%d_%H-%M-%S")  # a new folder per run: a rerun never merges into an old one
        self.writers: dict = {}

    def __getstate__(self):
        return {**self.__dict__, "writers": {}}

    def epoch(self, trial_ids: list[str], row: dict) -> None:
        rid = recipe_id(trial_ids[0])
        if rid not in self.writers:
            from tensorboardX import SummaryWriter

            folder = self.study_name + ("-baselines" if rid.startswith("baseline-") else "")
            self.writers[rid] = SummaryWriter(str(self.root / folder / f"{rid}_{self.stamp}"), flush_secs=30)
        w = self.writers[rid]
        for k, v in flat_metrics(row).items():
            w.add_scalar(f"{TB_PREFIX}/{k}", v, global_step=int(row["epoch"]))
        w.flush()

    def finished(self, row: dict) -> None:
        w = self.writers.pop(recipe_id(row["trial_id"]), None)
        if w is not None:
            w.close()


# ---------------------------------------------------------------- the Recorder's hook

class Trackers:
    """Every tracker of a study, called by the Recorder; none by default."""

    def __init__(self, items: list | None = None, store=None, study: str | None = None, say=print):
        self.items, self.store, self.study_name, self.say = list(items or []), store, study, say

    def __getstate__(self):
        return {**self.__dict__, "say": print}

    def epoch(self, rows: dict, row: dict) -> None:
        """Every epoch report of a recipe (``rows``: its seed -> trial id), the last one with the results."""
        if self.items and "epoch" in row:
            self._each("epoch", list(rows.values()), with_test_means(row))

    def finished(self, trial_id: str) -> None:
        """A trial's row is committed."""
        if self.items:
            self._each("finished", stored_row(self.store.con, self.study_name, trial_id))

    def _each(self, method: str, *args) -> None:
        for t in list(self.items):
            try:
                getattr(t, method)(*args)
            except Exception as err:  # a tracker must not sink the study: the database has every trial
                self.items.remove(t)
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                self.say(f"note: {t.name} stopped recording ({reason[:200]}); the study goes on, the database "
                         "keeps every trial")


def check_tracking(spec, cache_dir: str, say) -> None:
    """Before anything is trained: a tracking URI that cannot be opened stops the study here (naming
    the key); the MLflow experiment is made so that Ray's callback finds it by name. Says where
    every tracker writes."""
    if spec.tracking.mlflow is not None:
        open_mlflow(spec)
        say(f"mlflow: experiment '{experiment_name(spec)}' -> mlflow ui --backend-store-uri "
            f"{mlflow_uri(spec.tracking.mlflow.tracking_uri)}")
    if spec.tracking.tensorboard:
        say(f"tensorboard: {spec.name}/ and {spec.name}-baselines/ -> tensorboard --logdir "
            f"{tensorboard_root(spec, cache_dir)}")


def open_trackers(spec, store, cache_dir: str, resume: bool, say) -> Trackers:
    """The Optuna mirror of every study (unless the store is in memory) and, for the local executor, the
    spec's MLflow and TensorBoard trackers (the Ray executor passes Ray's own: ``ray_callbacks``)."""
    items: list = []
    if store.path != ":memory:":
        mirror = OptunaMirror(optuna_storage_path(store.path), spec, store)
        try:
            mirror.open(resume)
            items.append(mirror)
        except Exception as err:  # an unwritable folder: the study matters more than its dashboard
            say(f"note: cannot write the Optuna storage {mirror.path} ({str(err).strip().splitlines()[0]}); "
                "'study dashboard' will not show this study")
    if spec.executor.kind == "local":
        if spec.tracking.mlflow is not None:
            items.append(MlflowRuns(spec, store))
        if spec.tracking.tensorboard:
            items.append(TensorBoardRuns(tensorboard_root(spec, cache_dir), spec.name))
    return Trackers(items, store, spec.name, say)


def ray_callbacks(spec) -> list:
    """Ray Tune's own logger callbacks for the spec's trackers (the experiment exists: ``check_tracking``)."""
    out: list = []
    if spec.tracking.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        _quiet_mlflow()
        out.append(MLflowLoggerCallback(tracking_uri=mlflow_uri(spec.tracking.mlflow.tracking_uri),
                                        experiment_name=experiment_name(spec), tags={"study": spec.name},
                                        save_artifact=False))
    if spec.tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        out.append(TBXLoggerCallback())
    return out
