"""The default student's trial time on one GPU shared by ``--at-once`` trials (``executor.resources.gpu``
= 1 / at-once), and the trial completion rate that 64 such GPUs would send the study's single writer
(its ceiling: ``bench/store_scale.py``, README "Scaling out").

It needs torch, timm, numpy, pandas, scikit-learn, scipy, pyyaml, pydantic and the engine's
``mmpkd_core`` and ``study`` (the spec and its base config only: no Ray, no DuckDB), so that it runs on a
GPU machine with a plain PyTorch image:

    python bench/gpu_trial_time.py [--at-once 4] [--epochs 2] [--writer 13.1]

The student, schedule and evaluation are ``search_spaces/ddsm.yaml``'s own (``vit_tiny_patch16_224`` at
224 px, batch 32, every evaluation method and metric; not the laptop stand-in). The images are the
synthetic stand-in's drawn at 224 px, as many as CBIS-DDSM's training case descriptions (1,318 mass
and 1,546 calcification rows: 2,864), with 10% more for validation and the 704 test rows. Each trial
trains ``--epochs`` epochs (each with the validation objective a scheduler reads) and runs the final
evaluation; a full trial is the spec's ``student.epochs`` such epochs and that evaluation, and a trial
that ASHA stops at its first rung (``grace_period``) trains that many epochs and is not evaluated.
``--smoke`` runs the same code small, on whatever device there is.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CBIS_TRAIN, CBIS_TEST = 1318 + 1546, 378 + 326  # rows of CBIS-DDSM's case-description CSVs


def configs(args, raw: dict, cache: str) -> list:
    """``--at-once`` trials of the spec's own student and evaluation (``study.trial_config.base_config``) on
    the synthetic stand-in at CBIS-DDSM's size, one per validation method in turn."""
    from study.load import spec_from_dict
    from study.trial_config import base_config

    data = ({"n_train": 64, "n_val": 16, "n_test": 16, "image_size": 32, "seed": 0} if args.smoke else
            {"n_train": CBIS_TRAIN, "n_val": CBIS_TRAIN // 10, "n_test": CBIS_TEST, "image_size": 224, "seed": 0})
    student = {**raw["student"], "epochs": args.epochs}
    if args.smoke:
        student |= {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    raw = {k: v for k, v in raw.items() if k != "stand_in"} | {"domain": "synthetic_ddsm", "data": data,
                                                                "student": student}
    base = base_config(spec_from_dict(raw), cache)
    methods = raw["search_space"]["attention_method"]["choices"]
    return [base.with_params({"teacher": "mlp", "temperature": 4.0, "alpha": 0.5, "beta": 0.5,
                              "attention_method": methods[i % len(methods)], "seed": 0})
            for i in range(args.at_once)]


def one_trial(cfg) -> dict:
    """In a process of its own, as a Ray trial runs: the recipe, its epochs' seconds and its peak memory."""
    from mmpkd_core import run_recipe

    rows: list[dict] = []
    t0 = time.perf_counter()
    result = run_recipe(cfg, [cfg.seed], report=rows.append, prepared=True)[0]
    wall = time.perf_counter() - t0
    epochs = [r["seconds"] for r in rows]
    return {"method": cfg.attention_method, "epochs": epochs, "wall": wall,
            "evaluation": wall - sum(epochs), "gpu_mb": result.gpu_mb}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--at-once", type=int, default=4, help="trials sharing the GPU (resources.gpu = 1 / this)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs each measured trial trains")
    ap.add_argument("--writer", type=float, default=13.1,
                    help="the single writer's ceiling in finished trials/s (bench/store_scale.py)")
    ap.add_argument("--gpus", type=int, default=64)
    ap.add_argument("--smoke", action="store_true", help="small data and student, any device: checks the script")
    args = ap.parse_args()
    import torch

    from mmpkd_core.data import load_domain
    from mmpkd_core.teachers import teacher_outputs

    spec = yaml.safe_load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "search_spaces",
                                            "ddsm.yaml")))
    full_epochs, rung = spec["student"]["epochs"], spec["executor"]["grace_period"]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU visible)"
    with tempfile.TemporaryDirectory() as cache:
        cfgs = configs(args, spec, cache)
        t0 = time.perf_counter()
        load_domain(cfgs[0].domain, cfgs[0].data, cache)  # the driver's preparation, once
        teacher_outputs("mlp", cfgs[0].domain, cfgs[0].data, 0, cache)
        prepared = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.at_once, mp_context=get_context("spawn")) as pool:
            trials = list(pool.map(one_trial, cfgs))
        wall = time.perf_counter() - t0
    d = cfgs[0].data
    print(f"# the default student on {device}: {args.at_once} trial(s) at once, {args.epochs} epoch(s) each")
    print(f"{cfgs[0].student.model} (patch {cfgs[0].student.patch_size}, width {cfgs[0].student.embed_dim}, depth "
          f"{cfgs[0].student.depth}) at {d.image_size} px, batch {cfgs[0].student.batch_size}, {d.n_train:,} training, "
          f"{d.n_val:,} validation, {d.n_test:,} test images; data and teacher prepared in {prepared:.1f} s; "
          f"the {args.at_once} trials took {wall:.1f} s (process start and imports included)")
    print("| trial | validation method | epoch s (median) | train images/s | final evaluation s | peak GPU MiB |")
    print("|---|---|---|---|---|---|")
    for i, t in enumerate(trials):
        ep = statistics.median(t["epochs"])
        mb = f"{t['gpu_mb']:.0f}" if t["gpu_mb"] is not None else "-"
        print(f"| {i} | {t['method']} | {ep:.2f} | {d.n_train / ep:.0f} | {t['evaluation']:.1f} | {mb} |")
    epoch = statistics.mean(statistics.median(t["epochs"]) for t in trials)
    evaluation = statistics.mean(t["evaluation"] for t in trials)
    full = full_epochs * epoch + evaluation
    pruned = rung * epoch
    print(f"\none trial, {args.at_once} per GPU: {full:.1f} s run to {full_epochs} epochs and evaluated; "
          f"{pruned:.1f} s stopped by ASHA at {rung} epochs")
    for label, seconds in (("every trial run to the end", full), (f"every trial stopped at {rung} epochs", pruned)):
        rate = args.gpus * args.at_once / seconds
        print(f"{args.gpus} GPUs x {args.at_once} trials, {label}: {rate:.2f} finished trials/s against the "
              f"writer's {args.writer:g} ({rate / args.writer:.2f} of its ceiling)")


if __name__ == "__main__":
    main()
