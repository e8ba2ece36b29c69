"""Run every benchmark in one go and write bench/results.md with the figures and the machine."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

BENCHES = ["trainer_throughput.py", "attention_cost.py", "objective_cost.py", "engine_overhead.py", "store_scale.py",
           "live_reads.py", "prepare_throughput.py", "calibration.py", "stream_memory.py", "teacher_scale.py"]


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
    """``make bench``: every benchmark, results.md written afresh. ``--only NAME ...``: those benchmarks
    again, their sections of results.md replaced and stamped with their own machine line, the others kept."""
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    only = args[1:] if args[:1] == ["--only"] else None
    unknown = [b for b in only or [] if b not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]}; known: {', '.join(BENCHES)}")
    path = os.path.join(here, "results.md")
    kept = _sections(path) if only else {}
    head = (f"# Benchmarks\n\nMachine: {machine()}\n\nEach figure below was measured by `make bench` in one run;"
            " ratios are of runs made side by side in the same process.\n") if not only else kept.pop("", "")
    if only and "measured again on its own" not in head:
        head = head.rstrip("\n") + ("\n\nA section marked 'measured again on its own' was run later with "
                                     "`python bench/run_all.py --only NAME`, on the machine its line names.\n")
    parts = [head]
    t0 = time.perf_counter()
    for bench in BENCHES:
        if only and bench not in only:
            if bench in kept:
                parts.append(kept[bench])
            continue
        t = time.perf_counter()
        out = subprocess.run([sys.executable, os.path.join(here, bench)], capture_output=True, text=True)
        if out.returncode:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"{bench} failed (exit {out.returncode})")
        again = f"\n\nMeasured again on its own: {machine()}." if only else ""
        parts.append(f"## {bench} ({time.perf_counter() - t:.0f} s){again}\n\n{out.stdout.strip()}\n")
        print(out.stdout.strip(), flush=True)
    if not only:
        parts.append(f"Total: {time.perf_counter() - t0:.0f} s.\n")
    elif "total" in kept:
        parts.append(kept["total"])
    with open(path, "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {path}")


def _sections(path: str) -> dict:
    """results.md cut at its '## NAME' headings: '' -> the head, NAME -> its section, 'total' -> the last line."""
    import re

    text = open(path).read() if os.path.exists(path) else ""
    total = re.search(r"\nTotal: .*\n?$", text)
    out = {"total": total.group(0).lstrip("\n")} if total else {}
    if total:
        text = text[:total.start()] + "\n"
    pieces = re.split(r"(?m)^(?=## )", text)
    out[""] = pieces[0]
    for piece in pieces[1:]:
        out[piece.split()[1]] = piece
    return out


if __name__ == "__main__":
    main()
