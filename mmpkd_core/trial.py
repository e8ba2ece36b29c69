"""``run_trial``: the only door into the science. Usable from a notebook: ``run_trial(cfg)``.

``run_recipe`` trains one recipe under several seeds in lockstep, so that a scheduler sees the
validation objective averaged over seeds after every epoch.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mmpkd_core.cache import default_cache_dir
from mmpkd_core.version import stamp
from mmpkd_core.config import TrialConfig
from mmpkd_core.data import load_domain
from mmpkd_core.data.base import domain_folder
from mmpkd_core.evaluate import auroc, localization_scores, predict_scores, tune_methods
from mmpkd_core.teachers import teacher_outputs
from mmpkd_core.trainer import trial_inputs, train_epochs

CHANCE_REFERENCES = ("uniform", "centre")  # scored in every trial, beside the real methods
EPOCH_KEYS = ("loss", "ce", "kd", "feat", "lr", "val_auroc", "val_objective", "seconds")


@dataclass
class TrialResult:
    config: TrialConfig
    config_hash: str
    epochs: list[dict]
    test_auroc: float
    val_auroc: float
    val_objective: float  # what the sampler optimises (validation images only)
    test_objective: float  # the same method x metric on the test images
    image_ids: list[str]  # test images with an ROI, in score order
    scores: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (method, metric) -> (n_images,)
    teacher_metrics: dict = field(default_factory=dict)
    method_params: dict = field(default_factory=dict)  # per method, the parameters chosen on validation images
    maps: dict = field(default_factory=dict)  # method -> (n_images, h, w) token-grid maps kept for the gallery
    data_path: str = ""  # the prepared data (images, masks) the scores refer to
    seconds: float = 0.0
    gpu_mb: float | None = None  # peak GPU memory of the trial's process, where it ran on a GPU

    def payload(self) -> dict:
        """Plain, JSON-able form for reporting from a worker to the driver."""
        return {
            "seed": self.config.seed, "config_hash": self.config_hash, "test_auroc": self.test_auroc,
            "val_auroc": self.val_auroc, "val_objective": self.val_objective, "test_objective": self.test_objective,
            "image_ids": list(self.image_ids), "teacher_metrics": self.teacher_metrics, "epochs": self.epochs,
            "method_params": self.method_params, "data_path": self.data_path,
            "maps": {m: np.round(a.reshape(len(a), -1), 4).tolist() for m, a in self.maps.items()},
            "grid": list(next(iter(self.maps.values())).shape[1:]) if self.maps else None,
            "scores": {f"{m}|{k}": [None if np.isnan(v) else float(v) for v in arr]
                       for (m, k), arr in self.scores.items()},
            "trial_seconds": self.seconds, "gpu_mb": self.gpu_mb, **stamp(),
        }


def baseline_config(cfg: TrialConfig) -> TrialConfig:
    """The matched no-distillation baseline of ``cfg``: same domain, data, seed, student and schedule,
    alpha = beta = 0, evaluated under every registered method and metric so that any study can
    reuse it. Its ``config_hash()`` is the key under which it is stored and looked up."""
    from mmpkd_core.attention import available as methods
    from mmpkd_core.localization import available as metrics

    return dataclasses.replace(
        cfg, teacher="none", alpha=0.0, beta=0.0, temperature=1.0, attention_method="rollout", teacher_options="{}",
        objective_metric="pointing_game", eval_methods=tuple(m for m in methods() if m != "random"),
        eval_metrics=tuple(metrics()),
    )


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class PreparedCacheMissing(FileNotFoundError):
    """A study's trial on a node that cannot read the data and teachers the driver prepared."""


def check_prepared(cfgs: list[TrialConfig]) -> None:
    """A study's trial reads the data and teachers that the driver prepared before any trial, and
    prepares none itself: a node that cannot read them (a cluster node without the driver's cache
    folder) says which path, and how to share the cache."""
    from mmpkd_core.data import DOMAINS
    from mmpkd_core.teachers.base import teacher_path

    cfg = cfgs[0]
    root = (Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()).expanduser()
    missing = root
    if root.is_dir():
        data = domain_folder(cfg.domain, cfg.data, root)
        needed = [data / ("prepared.json" if DOMAINS.get(cfg.domain).is_real else "arrays.npz")]
        needed += [teacher_path(c.teacher, c.domain, c.data, c.seed, root, json.loads(c.teacher_options))
                   for c in cfgs if not c.is_baseline]
        missing = next((p for p in needed if not os.access(p, os.R_OK)), None)
    if missing is not None:
        raise PreparedCacheMissing(
            f"{socket.gethostname()} cannot read {missing}: the driver prepares the data and teachers under its "
            f"cache folder {root} before any trial, and every trial reads them at that same path. On a cluster, "
            "put the cache on storage that every node mounts at the same path: study run --cache-dir "
            "/shared/mmpkd_cache (or MMPKD_CACHE)")


def run_trial(cfg: TrialConfig, report: Callable[[dict], None] | None = None, prepared: bool = False) -> TrialResult:
    """Train one student with one recipe and one seed, and evaluate it (see ``run_recipe``)."""
    return run_recipe(cfg, [cfg.seed], report, prepared=prepared)[0]


def run_recipe(cfg: TrialConfig, seeds: list[int], report: Callable[[dict], None] | None = None,
               prepared: bool = False) -> list[TrialResult]:
    """Train ``cfg`` once per seed, in lockstep, and evaluate each student on the test images.

    ``report(row)`` is called once per epoch with the losses and validation metrics averaged over
    seeds (``row["per_seed"]`` has each seed's own). The last epoch's row also carries every seed's
    whole result (``row["results"]``), so a caller that stops listening after the last epoch still
    receives them. Data and teachers absent from the cache are made here, unless ``prepared`` (a
    study's trial: the driver made them): then ``PreparedCacheMissing`` names what this node cannot read.
    """
    t_start = time.perf_counter()
    if prepared:
        check_prepared([dataclasses.replace(cfg, seed=int(s)) for s in seeds])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    data = load_domain(cfg.domain, cfg.data, cfg.cache_dir)
    cfgs = [dataclasses.replace(cfg, seed=int(s)) for s in seeds]
    teachers = [None if c.is_baseline else teacher_outputs(c.teacher, c.domain, c.data, c.seed, c.cache_dir,
                                                           json.loads(c.teacher_options)) for c in cfgs]
    tensors = [trial_inputs(data, tch, device) for tch in teachers]
    runs = [train_epochs(c, data, t) for c, t in zip(cfgs, tensors)]
    histories: list[list[dict]] = [[] for _ in cfgs]
    models = [None] * len(cfgs)
    tuned: list[dict | None] = [None] * len(cfgs)  # each seed's method parameters, chosen on validation this epoch
    for epoch in range(1, cfg.student.epochs + 1):
        for i, run in enumerate(runs):
            models[i], row = next(run)
            tuned[i] = row.pop("val_params")
            histories[i].append(row)
        rows = [h[-1] for h in histories]
        mean = {"epoch": epoch, **{k: float(np.mean([r[k] for r in rows])) for k in EPOCH_KEYS},
                "per_seed": {str(c.seed): r for c, r in zip(cfgs, rows)},
                "elapsed_seconds": time.perf_counter() - t_start}  # all seeds': what a stopped trial cost
        if epoch < cfg.student.epochs:
            if report is not None:
                report(mean)
            continue
        results = [evaluate(c, m, data, t, h, tch, p)
                   for c, m, t, h, tch, p in zip(cfgs, models, tensors, histories, teachers, tuned)]
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
        for r in results:
            r.seconds = (time.perf_counter() - t_start) / len(results)
            r.gpu_mb = peak
        if report is not None:
            report({**mean, "results": [r.payload() for r in results]})
        return results
    raise ValueError("student.epochs must be at least 1")


def evaluate(cfg: TrialConfig, model, data, t, history: list[dict], teacher, tuned: dict | None = None) -> TrialResult:
    """Every method on the test images, each at its parameters tuned on the validation images: the sampled
    method at ``tuned``, the ones its last epoch's objective chose (the objective's own), the others tuned
    here on the final model."""
    te = data.index("test")
    roi, val_roi = data.roi_index("test"), data.roi_index("val")
    methods = tuple(dict.fromkeys((*cfg.eval_methods, cfg.attention_method, *CHANCE_REFERENCES)))
    others = [m for m in methods if m != cfg.attention_method or tuned is None]
    chosen = tune_methods(model, lambda: t.batches(val_roi, 128, masks=True), None, others, cfg.objective_metric)
    if tuned:  # ({} for a method without a grid: nothing to record)
        chosen[cfg.attention_method] = tuned
    # the gallery keeps the maps of the sampled method (a baseline: of every method, for any trial to pair with)
    kept = {m: [] for m in (cfg.eval_methods if cfg.is_baseline else (cfg.attention_method,))
            if m not in CHANCE_REFERENCES}
    scores = localization_scores(model, t.batches(roi, 128, masks=True), None, methods, cfg.eval_metrics, params=chosen,
                                 keep_maps=kept)
    obj = scores.get((cfg.attention_method, cfg.objective_metric))
    last = history[-1]
    return TrialResult(
        config=cfg, config_hash=cfg.config_hash(), epochs=history,
        test_auroc=auroc(data.true_labels[te], predict_scores(model, t.batches(te, 256))),
        val_auroc=last["val_auroc"], val_objective=last["val_objective"],
        test_objective=float(np.nanmean(obj)) if obj is not None and len(obj) else float("nan"),
        image_ids=[str(i) for i in data.image_ids[roi]], scores=scores,
        teacher_metrics=teacher.metrics if teacher is not None else {}, method_params=chosen,
        maps={m: np.concatenate(v) for m, v in kept.items() if v},
        data_path=str(domain_folder(cfg.domain, cfg.data, cfg.cache_dir).resolve()),
    )
