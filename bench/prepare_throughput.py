"""Preparation throughput of a real data set: a generated CBIS-DDSM tree of a few hundred DICOMs
(tests/real_layouts.py: 16-bit mammograms with 8-bit ROI-mask DICOMs, the TCIA CSVs), decoded,
padded, resized to 224 and cached, with one decoding process and with one per core, side by side.
A second load of the same data set must prepare nothing.

    python bench/prepare_throughput.py [--patients 150] [--height 1024] [--width 768]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import real_layouts  # noqa: E402

from mmpkd_core.data import DOMAINS, DataConfig, load_domain  # noqa: E402
from mmpkd_core.data.prepared import PREPARE_COUNT, ensure_prepared  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=150)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=768)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = real_layouts.cbis_ddsm(Path(tmp) / "ddsm", patients=args.patients, size=(args.height, args.width))
        n = 2 * args.patients
        mb = sum(f.stat().st_size for f in (root / "CBIS-DDSM").rglob("*.dcm")) / 1e6
        print(f"# prepare throughput: {n} mammogram DICOMs {args.width}x{args.height} (16 bit) + {n + 1} ROI-mask "
              f"DICOMs, {mb:.0f} MB, written in {time.perf_counter() - t0:.0f} s; resized to 224x224\n")
        print("| decoding processes | seconds | images/s |\n|---|---|---|")
        cfg = DataConfig(root=str(root), image_size=224)
        rates = {}
        for workers in (1, os.cpu_count() or 1):
            t = time.perf_counter()
            ensure_prepared(DOMAINS.get("cbis_ddsm"), cfg, os.path.join(tmp, f"cache{workers}"), workers=workers,
                            force=True, say=lambda m: None)
            sec = time.perf_counter() - t
            rates[workers] = n / sec
            print(f"| {workers} | {sec:.1f} | {n / sec:.1f} |")
        before = PREPARE_COUNT["prepared"]
        t = time.perf_counter()
        d = load_domain("cbis_ddsm", cfg, os.path.join(tmp, f"cache{os.cpu_count() or 1}"))
        print(f"\nSecond load of the prepared cache: {PREPARE_COUNT['prepared'] - before} preparations, "
              f"{time.perf_counter() - t:.2f} s for {len(d.image_ids)} images (memory-mapped).")
        if len(rates) > 1:
            print(f"Speed-up with {max(rates)} processes: {rates[max(rates)] / rates[1]:.2f}x.")


if __name__ == "__main__":
    main()
