"""Run every benchmark in one go and write bench/results.md with the figures and the machine."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

BENCHES = ["trainer_throughput.py", "attention_cost.py", "engine_overhead.py", "store_scale.py", "live_reads.py",
           "prepare_throughput.py", "calibration.py", "stream_memory.py", "teacher_scale.py"]


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{model}, {os.cpu_count()} cores, GPU: {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    parts = [f"# Benchmarks\n\nMachine: {machine()}\n\nEach figure below was measured by `make bench` in one run;"
             " ratios are of runs made side by side in the same process.\n"]
    t0 = time.perf_counter()
    for bench in BENCHES:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, os.path.join(here, bench)], capture_output=True, text=True)
        if out.returncode:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"{bench} failed (exit {out.returncode})")
        parts.append(f"## {bench} ({time.perf_counter() - t:.0f} s)\n\n{out.stdout.strip()}\n")
        print(out.stdout.strip(), flush=True)
    parts.append(f"Total: {time.perf_counter() - t0:.0f} s.\n")
    with open(os.path.join(here, "results.md"), "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {os.path.join(here, 'results.md')}")


if __name__ == "__main__":
    main()
