"""A trial's memory, estimated before any training, against what the node has.

Images stream from disk (``mmpkd_core.data.stream``), so a trial's memory is the runtime, the
student with its optimiser state and activations, the batches in flight, and a few numbers per image
(labels, teacher outputs, the domain's table or reports): it grows with the data set only through
those. ``check`` turns the estimate into one line naming the numbers and the knob to turn when the
trials that run at once on one node cannot fit.
"""
from __future__ import annotations

from dataclasses import dataclass

RUNTIME_MB = 1000.0  # Python with torch (~510 MB), timm (~200), pandas and pyarrow (~110), then allocator pools
MB = 2**20


@dataclass(frozen=True)
class Estimate:
    """Megabytes one trial process needs, by part; ``device_mb`` where it trains on a GPU."""

    parts: dict[str, float]
    device_mb: float | None

    @property
    def host_mb(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        return ", ".join(f"{k} {v:,.0f}" for k, v in self.parts.items() if v >= 1)


def student_numbers(student, image_size: int) -> tuple[int, int]:
    """``(parameters, tokens)`` of the student, built on the meta device (no memory, no weights read)."""
    import dataclasses

    import torch

    from mmpkd_core.student import build_student

    with torch.device("meta"):
        model = build_student(dataclasses.replace(student, pretrained=None), image_size)
    tokens = (image_size // student.patch_size) ** 2 + 1
    return sum(p.numel() for p in model.parameters()), tokens


def estimate(cfg, n_images: int, image_size: int, per_image_bytes: float = 0.0, seeds: int = 1,
             teacher_dim: int = 768, gpu: bool = False, workers: int = 0) -> Estimate:
    """One recipe's process: ``seeds`` students trained in lockstep on ``n_images`` images of
    ``image_size`` px; ``per_image_bytes``: the domain's table or reports per image, as loaded."""
    s = cfg.student
    params, tokens = student_numbers(s, image_size)
    model = params * 4 * 4 / MB  # weights, gradients, AdamW's two moments (fp32)
    # activations kept for backward: per block about 12 (B, T, D) tensors and 3 (B, heads, T, T) ones
    train_act = s.batch_size * s.depth * (12 * tokens * s.embed_dim + 3 * s.num_heads * tokens * tokens) * 4 / MB
    # evaluation: batches of 128 with every block's attention (and, for gradient methods, its gradient) kept
    eval_act = 128 * s.depth * (4 * tokens * s.embed_dim + 2 * s.num_heads * tokens * tokens) * 4 / MB
    batch_px = s.batch_size * image_size * image_size
    batches = ((workers + 1) * 2 * batch_px + 3 * max(batch_px, 128 * image_size * image_size) * 4) / MB
    per_image = n_images * (64 + per_image_bytes + (2 + 2 * teacher_dim) * 4) / MB
    parts = {"runtime": RUNTIME_MB, "students": seeds * (model + max(train_act, eval_act)),
             "batches": batches, "per-image arrays": per_image}
    device = (seeds * (model + max(train_act, eval_act)) + batches + n_images * (2 + teacher_dim) * 4 / MB
              if gpu else None)
    return Estimate(parts, device)


def node_memory_mb() -> float | None:
    """Memory this process may use: the cgroup's limit where one is set, else MemAvailable."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = open(path).read().strip()
            if raw != "max" and int(raw) < 1 << 60:
                return int(raw) / MB
        except (OSError, ValueError):
            pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return None


def per_image_bytes(data) -> float:
    """Bytes per image of what a trial holds besides the images: reports or a table, ids, split."""
    n = max(1, len(data.labels))
    text = sum(len(t) for t in data.text) * 2.5 / n if data.text is not None else 0.0  # str objects, meta copy
    table = float(data.table.memory_usage(deep=True).sum()) / n if data.table is not None else 0.0
    return text + table + 120.0


def gpu_memory_mb() -> float | None:
    import torch

    return torch.cuda.get_device_properties(0).total_memory / MB if torch.cuda.is_available() else None


def check(cfg, data, concurrent: int, seeds: int = 1, gpu_share: float | None = None,
          node_mb: float | None = None, gpu_mb: float | None = None) -> tuple[Estimate, str | None]:
    """The estimate for one trial process, and ``None`` if ``concurrent`` of them fit the node's memory
    (and each its GPU share), else one line naming the numbers and the knob to turn. ``gpu_share``: the
    fraction of a GPU each trial asks for (None: the trials run on the CPU)."""
    est = estimate(cfg, len(data.labels), data.images.shape[-1], per_image_bytes(data), seeds,
                   gpu=gpu_share is not None)
    node_mb = node_memory_mb() if node_mb is None else node_mb
    need = est.host_mb * concurrent
    knobs = "lower student.batch_size, data.image_size or the student's size"
    if node_mb is not None and need > node_mb:
        return est, (f"{concurrent} trial(s) at once need about {need / 1024:,.1f} GB of memory ({concurrent} x "
                     f"{est.host_mb:,.0f} MB: {est.describe()}) but this node has {node_mb / 1024:,.1f} GB available: "
                     f"{knobs}, run fewer trials at once (executor.max_concurrent) or take a subset "
                     "(data.options.max_train)")
    gpu_mb = gpu_memory_mb() if gpu_share is not None and gpu_mb is None else gpu_mb
    if gpu_share is not None and gpu_mb is not None and est.device_mb > gpu_share * gpu_mb:
        return est, (f"a trial needs about {est.device_mb:,.0f} MB of GPU memory but its share "
                     f"(executor.resources.gpu {gpu_share:g}) of a {gpu_mb / 1024:,.0f} GB GPU is "
                     f"{gpu_share * gpu_mb:,.0f} MB: raise executor.resources.gpu or {knobs}")
    return est, None
