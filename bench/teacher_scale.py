"""Teachers at the real data sets' sizes: text teachers on a synthetic corpus of 200,000 reports (the
PA and AP images of MIMIC-CXR), tabular teachers on CBIS-DDSM's size (about 3,100 rows).

What is measured and what is extrapolated is said on each row. bert_scratch: a training epoch on
``--epoch-reports`` reports is timed, and the engine's own forecast (the time of a batch here times the
batches of 6 fits of 10 epochs) is printed beside it. minilm: the time to embed ``--embed-reports``
reports (extrapolated to the corpus; done once, then cached on disk) and one logistic-regression head
fitted on 200,000 embeddings (measured; cross-fitting fits 6 x 4 of them).

    python bench/teacher_scale.py [--reports 200000] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def corpus(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    from mmpkd_core.data.synthetic_cxr import _reports

    rng = np.random.default_rng(seed)
    true = (rng.random(n) < 0.5).astype(np.int64)
    side = np.where(rng.random(n) < 0.5, "left", "right")
    zone = rng.choice(["upper", "mid", "lower"], n)
    return _reports(rng, true, side, zone), true


def reports_domain(texts: list[str], labels: np.ndarray, n_val: int = 2000, n_test: int = 2000):
    from mmpkd_core.data.base import DomainData

    n = len(texts)
    split = np.array(["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test)
    return DomainData("cxr", "text", np.zeros((n, 1, 1, 1), np.uint8), labels, labels, np.zeros((n, 1, 1), bool),
                      split, np.arange(n).astype(str), text=texts)


def bert_epoch_seconds(texts: list[str], labels: np.ndarray) -> float:
    """One epoch of bert_scratch's own fit on these reports (its tokenizer trained first, not timed)."""
    from mmpkd_core.teachers import TEACHERS

    bert = TEACHERS.get("bert_scratch")
    cls = type("OneEpoch", (bert,), {"epochs": 1})
    t = cls(0)
    data = reports_domain(texts, labels, n_val=len(texts) // 20, n_test=len(texts) // 20)
    t0 = time.perf_counter()
    t.fit(data)
    return time.perf_counter() - t0


def minilm_numbers(texts: list[str], labels: np.ndarray, n_embed: int) -> tuple[float, float]:
    """(seconds to embed ``n_embed`` reports, seconds of one head fit on len(texts) embeddings)."""
    from sklearn.linear_model import LogisticRegression

    from mmpkd_core.teachers import text as text_teachers

    path = text_teachers.minilm_path()
    text_teachers.encode_texts(path, texts[:8], 128, "mean")  # loads the model
    sample = texts[8:8 + n_embed]
    t0 = time.perf_counter()
    emb = text_teachers.encode_texts(path, sample, 128, "mean")
    embed = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(sample), len(texts))  # every report's embedding: its sample's, with a little noise
    x = emb[idx] + rng.normal(0, 0.01, (len(texts), emb.shape[1])).astype(np.float32)
    y = labels[8:8 + n_embed][idx]
    t0 = time.perf_counter()
    LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    return embed, time.perf_counter() - t0


def tabular_seconds(rows: int) -> dict[str, float]:
    import tempfile

    from mmpkd_core.data import DataConfig
    from mmpkd_core.teachers import teacher_outputs

    cfg = DataConfig(n_train=int(rows * 0.7), n_val=int(rows * 0.15), n_test=rows - int(rows * 0.7) - int(rows * 0.15),
                     image_size=16)
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for name in ("lightgbm", "mlp"):
            t0 = time.perf_counter()
            teacher_outputs(name, "synthetic_ddsm", cfg, 0, cache)
            out[name] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=200_000)
    ap.add_argument("--epoch-reports", type=int, default=20_000)
    ap.add_argument("--embed-reports", type=int, default=2_000)
    ap.add_argument("--table-rows", type=int, default=3_100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    from mmpkd_core.teachers import TEACHERS

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    texts, labels = corpus(args.reports)
    made = time.perf_counter() - t0
    data = reports_domain(texts, labels)
    bert = TEACHERS.get("bert_scratch")
    t0 = time.perf_counter()
    line = bert.forecast(data, {})
    forecast_cost = time.perf_counter() - t0
    per_step = bert.step_seconds([texts[i] for i in data.index("train")[:2000]])
    epoch = bert_epoch_seconds(texts[:args.epoch_reports], labels[:args.epoch_reports])
    n_train = len(data.index("train"))
    fits = 1 + bert.folds
    crossfit = epoch * (n_train / (args.epoch_reports * 0.9)) * bert.epochs * bert.folds  # training epochs of all fits
    embed, head = minilm_numbers(texts, labels, args.embed_reports)
    tab = tabular_seconds(args.table_rows)

    def h(s):
        return f"{s / 3600:.2f} h" if s >= 3600 else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s")

    print(f"# teachers at scale: {args.reports:,} synthetic reports ({n_train:,} training), CPU, "
          f"{args.threads} thread(s)")
    print("| teacher | what | time | measured or extrapolated |\n|---|---|---|---|")
    print(f"| corpus | {args.reports:,} reports generated | {h(made)} | measured |")
    print(f"| bert_scratch | one training epoch on {args.epoch_reports:,} reports | {h(epoch)} | measured |")
    print(f"| bert_scratch | a training batch of {bert.batch_size} | {per_step * 1e3:.1f} ms | measured |")
    print(f"| bert_scratch | {fits} fits x {bert.epochs} epochs on {n_train:,} reports (cross-fitting) | "
          f"{h(crossfit)} | extrapolated from the epoch above |")
    print(f"| bert_scratch | the engine's forecast before fitting (cost of forecasting: {forecast_cost:.1f} s) | "
          f"{(line or 'nothing said').split(' will take about ')[-1].split(' here')[0]} | forecast |")
    print(f"| minilm | embed {args.embed_reports:,} reports | {h(embed)} | measured |")
    print(f"| minilm | embed all {args.reports:,} reports, once (cached on disk after) | "
          f"{h(embed * args.reports / args.embed_reports)} | extrapolated |")
    print(f"| minilm | one logistic-regression head on {args.reports:,} x 384 | {h(head)} | measured |")
    print(f"| minilm | {fits} fits x 4 regularisation strengths (cross-fitting) | {h(head * fits * 4)} | "
          "extrapolated |")
    for name, s in tab.items():
        print(f"| {name} | {fits} fits on {args.table_rows:,} rows (cross-fitting, outputs cached) | {h(s)} | "
              "measured |")
    said = f"> teacher bert_scratch (seed 0): {line}" if line else "(nothing: under 10 minutes, it fits without a word)"
    print(f"\nThe engine's line before a bert_scratch fit at this size:\n\n{said}")


if __name__ == "__main__":
    main()
