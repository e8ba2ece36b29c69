"""Memory per trial that does not grow with the data set, and what streaming costs in throughput.

Writes MIMIC-sized stand-ins straight into the prepared cache's layout (``mmpkd_core.data.scale``:
uint8 images, the real domain's tables; the same 400 validation and test images at every size), and
runs one trial on each, in its own process: its peak RSS (and peak GPU memory where there is a GPU)
at two sizes. Then, on the small one and in one process, alternating: the engine's training loop
reading batches from disk against the same loop over the whole standardised float32 tensor held in
memory (the path before streaming).

    python bench/stream_memory.py [--sizes 5000 50000] [--image-size 224] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, sys, time
    def peak_kb():  # this process's own high-water mark: ru_maxrss would carry the parent's, from before exec
        return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
    import torch
    from mmpkd_core import StudentConfig, TrialConfig, run_trial
    from mmpkd_core.data import DataConfig
    args = json.loads(sys.argv[1])
    cfg = TrialConfig(domain="mimic_cxr", data=DataConfig(root=args["root"], image_size=args["size"]),
                      student=StudentConfig(**args["student"]), eval_methods=("raw_cls", "rollout"),
                      eval_metrics=("pointing_game",), attention_method="rollout", cache_dir=args["cache"],
                      threads=args["threads"])
    t0 = time.perf_counter()
    r = run_trial(cfg)
    print(json.dumps({"peak_rss_mb": peak_kb() / 1024,
                      "gpu_mb": r.gpu_mb, "seconds": time.perf_counter() - t0,
                      "train_seconds": sum(e["seconds"] for e in r.epochs), "val_auroc": r.val_auroc}))
""")

STUDENT = dict(patch_size=16, embed_dim=32, depth=2, num_heads=2, epochs=1, batch_size=64, warmup_epochs=0)


def one_trial(root: Path, cache: Path, size: int, threads: int) -> dict:
    args = {"root": str(root), "cache": str(cache), "size": size, "student": STUDENT, "threads": threads}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit("the trial failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(root: Path, cache: Path, size: int, threads: int, rounds: int) -> tuple[float, float, int]:
    """Training images per second (median of ``rounds``), streamed and in memory, alternating."""
    import numpy as np
    import torch

    from mmpkd_core import StudentConfig, TrialConfig
    from mmpkd_core.data import DataConfig, load_domain
    from mmpkd_core.trainer import Inputs, train_epochs, trial_inputs

    class InMemory(Inputs):
        """The path before streaming: every image standardised once, held as one float32 tensor."""

        def batches(self, rows, batch_size=128, masks=False):
            for s in range(0, len(rows), batch_size):
                r = rows[s:s + batch_size]
                x = self.x[torch.from_numpy(r)]
                yield (x, np.asarray(self.data.masks[r])) if masks else x

    torch.set_num_threads(threads)
    cfg = TrialConfig(domain="mimic_cxr", data=DataConfig(root=str(root), image_size=size),
                      student=StudentConfig(**STUDENT), cache_dir=str(cache))
    data = load_domain(cfg.domain, cfg.data, cfg.cache_dir)
    streamed = trial_inputs(data, None, torch.device("cpu"))
    memory = InMemory(**{k: getattr(streamed, k) for k in ("data", "device", "mean", "std", "y", "t_logits", "t_feat")})
    memory.x = torch.cat(list(streamed.batches(np.arange(len(data.labels)), 1024)))  # (N, 1, S, S) float32
    n = len(data.index("train"))
    rates = {"stream": [], "memory": []}
    for _ in range(rounds):
        for name, inp in (("stream", streamed), ("memory", memory)):
            t0 = time.perf_counter()
            for _model, _row in train_epochs(cfg, data, inp):
                pass
            rates[name].append(n / (time.perf_counter() - t0))
    return statistics.median(rates["stream"]), statistics.median(rates["memory"]), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs=2, default=[5000, 50000])
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from mmpkd_core.data.scale import write_mimic_like

    S = args.image_size
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            t0 = time.perf_counter()
            write_mimic_like(tmp / f"root{n}", tmp / "cache", n=n, image_size=S)
            written = time.perf_counter() - t0
            got = one_trial(tmp / f"root{n}", tmp / "cache", S, args.threads)
            rows.append((n, written, got))
            if n == args.sizes[0]:
                stream, memory, n_train = throughput(tmp / f"root{n}", tmp / "cache", S, args.threads, args.rounds)
            shutil.rmtree(tmp / f"root{n}")
    (a, _, ga), (b, _, gb) = rows
    print(f"# memory per trial: prepared caches of {a:,} and {b:,} images at {S} px (uint8, the mimic_cxr layout), "
          f"the same 400 validation and test images; one trial each in its own process; ViT patch 16 width 32 depth 2, "
          f"batch 64, 1 epoch, {args.threads} thread(s), CPU" + (", GPU" if ga["gpu_mb"] is not None else ""))
    print("| images | cache (MB) | written in (s) | trial (s) | peak RSS (MB) | peak GPU (MB) | val AUROC |"
          "\n|---|---|---|---|---|---|---|")
    for n, written, g in rows:
        gpu = f"{g['gpu_mb']:.0f}" if g["gpu_mb"] is not None else "-"
        print(f"| {n:,} | {n * S * S / 2**20:,.0f} | {written:.0f} | {g['seconds']:.0f} | "
              f"{g['peak_rss_mb']:,.0f} | {gpu} | {g['val_auroc']:.3f} |")
    ratio = gb["peak_rss_mb"] / ga["peak_rss_mb"]
    print(f"\npeak RSS {b:,} / {a:,} images: {ratio:.3f} (target <= 1.10)")
    if ga["gpu_mb"] is not None:
        print(f"peak GPU memory {b:,} / {a:,} images: {gb['gpu_mb'] / ga['gpu_mb']:.3f} (target <= 1.10)")
    print(f"\ntraining throughput on {n_train:,} training images ({a:,} in all), median of {args.rounds} alternating "
          f"rounds, each epoch with its validation:\n")
    print("| path | images/s |\n|---|---|")
    print(f"| in memory (one float32 tensor of every image) | {memory:.0f} |"
          f"\n| streamed from the prepared cache | {stream:.0f} |")
    print(f"| ratio streamed / in memory | {stream / memory:.3f} (target >= 0.9) |")


if __name__ == "__main__":
    main()
