import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0"}


@pytest.fixture(scope="session", autouse=True)
def ray_environment():
    """Ray's quiet settings for the session's own processes, and the environment as it was afterwards."""
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def torch_state_is_restored():
    """Code under test may set torch's threads or determinism (``run_trial`` does, for its trial):
    whatever a test changed is put back, so no test leaves process-wide state behind."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One data/teacher cache for the whole session (tests reuse prepared data like trials do)."""
    return str(tmp_path_factory.mktemp("mmpkd_cache"))


TINY_DATA = dict(n_train=120, n_val=40, n_test=40, image_size=32, seed=0)


# A small study database written through the store, no training: baseline + 4 trials.
IMAGES = [f"img{i:02d}" for i in range(30)]


EPOCHS = [{"epoch": e, "loss": 1.0 / e, "ce": 0.5, "kd": 0.4, "feat": 0.0, "lr": 1e-3, "val_auroc": 0.8,
           "val_objective": 0.5, "seconds": 0.1} for e in (1, 2)]


def config(teacher, alpha, seed=0):
    return {"domain": "synthetic_ddsm", "teacher": teacher, "temperature": 2.0, "alpha": alpha, "beta": 0.0,
            "attention_method": "rollout", "seed": seed, "student": {"lr": 1e-3, "weight_decay": 0.05, "epochs": 2}}


def result(seed, scores):
    return {"seed": seed, "val_objective": 0.5, "test_objective": 0.5, "val_auroc": 0.9, "test_auroc": 0.9,
            "trial_seconds": 1.0, "image_ids": IMAGES, "scores": scores}


def scores(rng, shift):
    out = {}
    for method in ("rollout", "raw_cls", "uniform", "centre"):
        s = 0.0 if method in ("uniform", "centre") else shift.get(method, 0.0)
        out[f"{method}|pointing_game"] = [float(v) for v in (rng.random(30) < 0.4 + s)]
        out[f"{method}|relevance_mass"] = list(np.clip(rng.normal(0.3 + s, 0.05, 30), 0, 1))
    return out


@pytest.fixture()
def demo_db(tmp_path):
    """Baseline + 4 trials: 'mlp' trials gain +0.3 on rollout, 'lightgbm' trials gain nothing."""
    rng = np.random.default_rng(0)
    from study.store import Store

    store = Store(tmp_path / "s.duckdb")
    spec = {"objective": {"metric": "pointing_game"},
            "search_space": {"teacher": {"type": "categorical", "choices": ["lightgbm", "mlp"]}}}
    store.create_study("demo", "synthetic_ddsm", json.dumps(spec), "h")
    base = scores(rng, {})
    store.trial_started("demo", "baseline-b0", None, config("none", 0.0), {}, "b0", None)
    store.trial_finished("demo", "baseline-b0", "completed", [], result(0, base))
    for i, teacher in enumerate(["mlp", "mlp", "lightgbm", "lightgbm"]):
        shift = {"rollout": 0.3} if teacher == "mlp" else {}
        s = {k: list(np.clip(np.array(v) + (shift.get(k.split("|")[0], 0.0) if "relevance" in k else 0), 0, 1))
             for k, v in base.items()}
        for k in s:
            if k.startswith("rollout|pointing_game") and teacher == "mlp":
                s[k] = [1.0] * 30
        tid = f"{i:04d}"
        store.trial_started("demo", tid, i, config(teacher, 0.5), {"teacher": teacher}, f"h{i}", "b0")
        store.trial_finished("demo", tid, "completed", EPOCHS,
                             {**result(0, s), "val_objective": 0.6 if teacher == "mlp" else 0.4})
    from study.gain_tables import refresh_gains

    refresh_gains(store, "demo", n_boot=200)
    store.finish_study("demo", "completed", 12.0)
    store.close()
    return tmp_path / "s.duckdb"




def free_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to a process that leads a group of its own (started with start_new_session), then, once it
    has exited (or after 30 s), SIGKILL to whatever is left of its group: a test stops exactly what it
    started. (SIGTERM to the whole group at once would also stop a Ray head's GCS, and `ray start` then
    waits 30 s for that GCS to drain its node.)"""
    proc.send_signal(signal.SIGTERM)  # nothing, if it has exited already
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


# A Ray head started before the tests, as a user's own Ray would be: the session fails if any test
# stopped it (`ray stop` stops every Ray of the user on the machine). Started once, by the process that
# runs the session (with pytest-xdist, the controller); MMPKD_NO_RAY_SENTINEL=1 skips it.
def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput") or os.environ.get("MMPKD_NO_RAY_SENTINEL"):
        return
    port = free_port()
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    session.config.ray_sentinel = subprocess.Popen(
        [ray, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=0",
         "--include-dashboard=false", "--disable-usage-stats"], env=dict(os.environ, **RAY_ENV),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and session.config.ray_sentinel.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)


def pytest_sessionfinish(session, exitstatus):
    head = getattr(session.config, "ray_sentinel", None)
    if head is None:
        return
    try:  # a head that was killed a moment ago may not have been reaped yet
        head.wait(timeout=2)
        alive = False
    except subprocess.TimeoutExpired:
        alive = True
    stop_group(head)  # by its own process group, as every test stops what it started
    if not alive:
        print("\nerror: the Ray head started before the tests was stopped during them: a test stopped a Ray it "
              "did not start", file=sys.stderr)
        session.exitstatus = 1
