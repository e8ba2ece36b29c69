"""The teacher contract and the on-disk cache of fitted teachers' outputs.

A teacher reads the privileged modality (report text or metadata row). It is fitted once per
(domain, teacher, seed, data) on the training split -- with the training labels as the student
sees them -- and its outputs on every image (logits and an embedding) are cached on disk. Trials
load those outputs; no teacher ever runs inside a student's training loop.

Cross-fitting: a teacher that predicts the very training images it was fitted on returns their
(possibly wrong) labels back, memorised; its soft targets would then carry nothing the labels
lack. So the *logits* of training images are out-of-fold: the training split is cut into
``Teacher.folds`` folds (5 unless a teacher says otherwise) and each fold is predicted by a teacher
fitted without it. The logits of validation and test images and all embeddings come from the teacher fitted on the whole
training split (embeddings of different fits live in different spaces and cannot be mixed).
"""
from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.metrics import roc_auc_score

from mmpkd_core.cache import atomic_write, cache_root
from mmpkd_core.data.base import DataConfig, DomainData, load_domain
from mmpkd_core.hashing import stable_hash
from mmpkd_core.version import SCIENCE_VERSION, describe, notify
from mmpkd_core.registry import Registry


class Teacher(ABC):
    """A privileged-modality classifier.

    ``fit`` is called once, with the whole domain; it may read only the training split's labels
    (``data.labels[data.index("train")]``) and may use the validation split's for early stopping.
    It must not read ``true_labels`` or the test split's labels. ``predict`` is then called once
    and returns outputs for every image, in the domain's order (a cross-fitting fold's teacher is
    asked for ``predict_logits`` instead). Neither may mutate ``data``.
    """

    modality: ClassVar[str]  # "text" | "tabular" | "any" (a control that reads no privileged modality)
    folds: ClassVar[int] = 5  # cross-fitting folds for the training images' logits; 0: none
    reads_labels: ClassVar[bool] = False  # a control whose outputs read the labels: its AUROC is no measure of skill
    reference: ClassVar[str | None] = None  # a matched control: the privileged teacher whose confidence it copies
    Options: ClassVar[type | None] = None  # a pydantic model of the teacher's ``teacher_options`` entry
    # fit and predict keep to the teacher's own state (no torch global RNG, no process-wide thread count) and
    # run outside the GIL: its fits (the whole training split and each cross-fitting fold) may run in threads
    # side by side, with the outputs of one fit after the other
    fits_in_threads: ClassVar[bool] = False

    def __init__(self, seed: int, options: dict | None = None, cache_dir=None):
        self.seed = seed
        self.options = self.Options(**(options or {})) if self.Options is not None else None
        self.cache_dir = cache_dir  # where a teacher may keep what it computes once (e.g. frozen embeddings)

    @classmethod
    def forecast(cls, data: DomainData, options: dict) -> str | None:
        """Called once before fitting (with cross-fitting) on ``data``: one line for the user when that
        will take long -- how long, and what to choose instead -- else ``None``. Must not mutate ``data``."""
        return None

    @classmethod
    def from_reference(cls, reference_logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A matched control (``reference`` set): its logits and embeddings, built from the reference
        teacher's logits instead of a fit."""
        raise NotImplementedError(f"{cls.__name__} has no reference teacher")

    @classmethod
    def identity(cls, options: dict) -> dict:
        """What besides the options decides the teacher's outputs (e.g. a weights digest); cached with them."""
        return {}

    @abstractmethod
    def fit(self, data: DomainData) -> None: ...

    @abstractmethod
    def predict(self, data: DomainData) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(logits (N, 2), embedding (N, D))`` for all N images."""

    def predict_logits(self, data: DomainData) -> np.ndarray:
        """The logits alone, as ``predict`` returns them: all a cross-fitting fold's teacher is asked for.
        A teacher whose embedding costs more than its logits returns them without it."""
        return self.predict(data)[0]


TEACHERS: Registry[type[Teacher]] = Registry("teacher")


def no_grad(fn):
    """``torch.no_grad()`` as a decorator that imports torch when called, not when the teacher
    module is imported: the registry (names, modalities, controls) is read without torch."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapped


@dataclass(frozen=True)
class TeacherOutputs:
    logits: np.ndarray  # (N, 2)
    embedding: np.ndarray  # (N, D)
    metrics: dict  # val/test AUROC against the truth, fit seconds


FIT_COUNT = {"fitted": 0}  # teachers actually fitted in this process (the cache makes the rest free)
_FIT_LOCK = threading.Lock()  # teachers fit in threads side by side (study.prepare)


def fitted(cls: type[Teacher], data: DomainData, seed: int, options: dict | None = None, cache_dir=None) -> Teacher:
    teacher = cls(seed, options, cache_dir)
    teacher.fit(data)
    return teacher


def fit_predict(cls: type[Teacher], data: DomainData, seed: int, options: dict | None = None,
                cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    return fitted(cls, data, seed, options, cache_dir).predict(data)


def out_of_fold_logits(cls: type[Teacher], data: DomainData, seed: int, options: dict | None = None,
                       cache_dir=None, pool=None) -> np.ndarray:
    """Logits of each training image from a teacher fitted without that image's fold; the folds' fits run
    in ``pool`` (an executor) when given."""
    tr = data.index("train")
    order = np.random.default_rng(seed).permutation(len(tr))
    folds = np.array_split(order, cls.folds)

    def held_out(fold: np.ndarray) -> np.ndarray:
        split = data.split.copy()
        split[tr[fold]] = "heldout"  # fit() reads only the "train" split
        fold_data = replace(data, split=split)
        return fitted(cls, fold_data, seed, options, cache_dir).predict_logits(fold_data)[tr[fold]]

    out = np.zeros((len(tr), 2), dtype=np.float32)
    for fold, logits in zip(folds, (pool.map if pool else map)(held_out, folds)):
        out[fold] = logits
    return out


def teacher_key(name: str, domain: str, data_cfg: DataConfig, seed: int, all_options: dict | None = None) -> str:
    cls = TEACHERS.get(name)
    reference = cls.reference
    options = (all_options or {}).get(name, {})
    blob = {"teacher": name, "domain": domain, "data": data_cfg.key(domain), "seed": seed, "crossfit": cls.folds,
            "reference": reference and teacher_key(reference, domain, data_cfg, seed, all_options)}
    if options or cls.Options is not None:  # absent for option-less teachers: their cached outputs stay valid
        blob |= {"options": options, "identity": cls.identity(options)}
    return stable_hash(blob)


def teacher_path(name: str, domain: str, data_cfg: DataConfig, seed: int, root, all_options: dict | None = None):
    """Where the fitted teacher's outputs are cached under the cache folder ``root``."""
    return Path(root) / "teachers" / f"{domain}-{name}-{teacher_key(name, domain, data_cfg, seed, all_options)}.npz"


def _made_by(path):
    """The science version a cached teacher's outputs record (None: absent, or made before versions were)."""
    if not path.exists():
        return None
    with np.load(path) as z:
        return int(z["science_version"]) if "science_version" in z.files else None


def teacher_outputs(name: str, domain: str, data_cfg: DataConfig, seed: int, cache_dir=None,
                    all_options: dict | None = None, threads: int = 1) -> TeacherOutputs:
    """The fitted teacher's outputs from the cache, fitting it once if absent. ``all_options`` maps
    teacher names to their options (a spec's ``teacher_options``). ``threads``: a teacher that
    ``fits_in_threads`` runs its fits (the whole training split and each fold) that many at a time."""
    cls = TEACHERS.get(name)
    options = (all_options or {}).get(name, {})
    path = teacher_path(name, domain, data_cfg, seed, cache_root(cache_dir), all_options)
    made_by = _made_by(path)
    if path.exists() and made_by != SCIENCE_VERSION:
        notify(f"teacher {name} (seed {seed}) made by {describe(made_by)}; this engine is science version "
               f"{SCIENCE_VERSION}: fitting it again")
    if not path.exists() or made_by != SCIENCE_VERSION:
        import time

        data = load_domain(domain, data_cfg, cache_dir)
        if cls.modality not in ("any", data.modality):
            raise ValueError(f"teacher '{name}' reads {cls.modality}; domain '{domain}' has {data.modality}")
        t0 = time.perf_counter()
        if cls.reference:  # a control matched to another teacher's confidence
            ref = teacher_outputs(cls.reference, domain, data_cfg, seed, cache_dir, all_options)
            logits, emb = cls.from_reference(ref.logits, data.labels)
        else:
            line = cls.forecast(data, options)
            if line:
                notify(f"teacher {name} (seed {seed}): {line}")
            root = str(cache_root(cache_dir))
            if cls.fits_in_threads and threads > 1:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(threads, thread_name_prefix=f"fit-{name}") as pool:
                    whole = pool.submit(fit_predict, cls, data, seed, options, root)
                    held_out = out_of_fold_logits(cls, data, seed, options, root, pool) if cls.folds else None
                    logits, emb = whole.result()
            else:
                logits, emb = fit_predict(cls, data, seed, options, root)
                held_out = out_of_fold_logits(cls, data, seed, options, root) if cls.folds else None
            if held_out is not None:
                logits[data.index("train")] = held_out
        metrics = {"fit_seconds": time.perf_counter() - t0}
        for split in ("val", "test"):
            idx = data.index(split)
            metrics[f"{split}_auroc"] = float(roc_auc_score(data.true_labels[idx], logits[idx, 1] - logits[idx, 0]))
        with _FIT_LOCK:
            FIT_COUNT["fitted"] += 1

        def write(p):
            with open(p, "wb") as f:
                np.savez(f, logits=logits.astype(np.float32), embedding=emb.astype(np.float32),
                         metrics=json.dumps(metrics), science_version=SCIENCE_VERSION)

        atomic_write(path, write)
    with np.load(path) as z:
        return TeacherOutputs(z["logits"], z["embedding"], json.loads(str(z["metrics"])))
