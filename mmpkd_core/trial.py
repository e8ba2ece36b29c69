"""``run_trial``: the only door into the science. Usable from a notebook: ``run_trial(cfg)``."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from mmpkd_core.config import TrialConfig

CHANCE_REFERENCES = ("uniform", "centre")  # scored in every trial, beside the real methods
from mmpkd_core.data import load_domain
from mmpkd_core.evaluate import auroc, localization_scores, predict_scores
from mmpkd_core.teachers import teacher_outputs
from mmpkd_core.trainer import to_tensors, train


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
    seconds: float = 0.0

    def payload(self) -> dict:
        """Plain, JSON-able form for reporting from a worker to the driver."""
        return {
            "config_hash": self.config_hash, "test_auroc": self.test_auroc, "val_auroc": self.val_auroc,
            "val_objective": self.val_objective, "test_objective": self.test_objective,
            "image_ids": list(self.image_ids), "teacher_metrics": self.teacher_metrics,
            "scores": {f"{m}|{k}": [None if np.isnan(v) else float(v) for v in arr] for (m, k), arr in self.scores.items()},
            "trial_seconds": self.seconds,
        }


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_trial(cfg: TrialConfig, report: Callable[[dict], None] | None = None) -> TrialResult:
    """Train one student with one recipe and evaluate it.

    ``report(row)`` is called once per epoch with the losses and validation metrics; the last
    epoch's row also carries the whole result (``row["result"]``), so a caller that stops
    listening after the last epoch still receives it.
    """
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device()
    data = load_domain(cfg.domain, cfg.data, cfg.cache_dir)
    teacher = None if cfg.is_baseline else teacher_outputs(cfg.teacher, cfg.domain, cfg.data, cfg.seed, cfg.cache_dir)
    t = to_tensors(data, teacher, device)

    held: dict = {}

    def on_epoch(row: dict, is_last: bool) -> None:
        if is_last:
            held["row"] = row
        elif report is not None:
            report(row)

    model, history = train(cfg, data, t, on_epoch)

    te = data.index("test")
    roi = te[data.masks[te].any(axis=(1, 2))]
    methods = tuple(dict.fromkeys((*cfg.eval_methods, cfg.attention_method, *CHANCE_REFERENCES)))
    scores = localization_scores(model, t.x[roi], data.masks[roi], methods, cfg.eval_metrics)
    obj = scores.get((cfg.attention_method, cfg.objective_metric))
    last = history[-1]
    result = TrialResult(
        config=cfg, config_hash=cfg.config_hash(), epochs=history,
        test_auroc=auroc(data.true_labels[te], predict_scores(model, t.x[te])),
        val_auroc=last["val_auroc"], val_objective=last["val_objective"],
        test_objective=float(np.nanmean(obj)) if obj is not None and len(obj) else float("nan"),
        image_ids=[str(i) for i in data.image_ids[roi]], scores=scores,
        teacher_metrics=teacher.metrics if teacher is not None else {},
    )
    result.seconds = time.perf_counter() - t_start
    if report is not None:
        report({**held["row"], "result": result.payload()})
    return result
