"""Images read from disk a batch at a time: memory per trial does not grow with the data set.

Every domain keeps its images and ROI masks in ``.npy`` files (a real domain's prepared cache: uint8;
a synthetic domain's cache: float32). A trial never loads them whole. ``Rows`` is a domain's view of
such a file -- the rows its options selected, in its order -- and reads rows with ``os.pread``, not
through a memory map, so the pages read go to the kernel's page cache and never count in the trial's
resident memory. ``batches`` feeds them through a ``torch.utils.data.DataLoader`` (worker processes and
pinned memory on a GPU) and standardises each batch on the device with the training split's mean and
standard deviation (``train_stats``, computed once in one streaming pass and cached beside the file).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

CHUNK_BYTES = 16 << 20  # streaming passes (ROI flags) read about this much at a time
STATS_CHUNK_BYTES = 4 << 20  # the statistics pass: each chunk becomes float64 (8x), twice


class ArrayFile:
    """A ``.npy`` file read by rows with ``os.pread``; picklable (each process opens its own descriptor)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path} is stored in Fortran order; prepare the cache again")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd: tuple[int, int] | None = None  # (pid, fd)

    def __getstate__(self):
        return {**self.__dict__, "_fd": None}

    def _descriptor(self) -> int:
        if self._fd is None or self._fd[0] != os.getpid():  # a forked loader worker opens its own
            self._fd = (os.getpid(), os.open(self.path, os.O_RDONLY))
        return self._fd[1]

    def __del__(self):
        if getattr(self, "_fd", None) is not None and self._fd[0] == os.getpid():
            try:
                os.close(self._fd[1])
            except OSError:
                pass

    def read(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (any order, repeats allowed) as a fresh array; runs of consecutive rows are one read."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if len(rows) == 0:
            return out
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        flat = out.reshape(len(rows), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(srt) != 1) + 1
        fd = self._descriptor()
        for run in np.split(np.arange(len(srt)), breaks):
            first, n = int(srt[run[0]]), len(run)
            buf = os.pread(fd, n * self.row_bytes, self.offset + first * self.row_bytes)
            if len(buf) != n * self.row_bytes:
                raise ValueError(f"{self.path} is shorter than its header says; prepare the cache again")
            flat[order[run]] = np.frombuffer(buf, dtype=np.uint8).reshape(n, self.row_bytes)
        return out


class Rows:
    """Rows ``index`` of an ``ArrayFile``, read on demand. ``blank``: rows that read as zeros (an ROI
    mask the domain's options do not score). Indexing returns a plain array of those rows only;
    ``np.asarray(rows)`` reads them all (for tests and small data)."""

    def __init__(self, file: ArrayFile, index: np.ndarray | None = None, blank: np.ndarray | None = None):
        self.file = file
        self.index = np.arange(file.shape[0]) if index is None else np.asarray(index, dtype=np.int64)
        self.blank = None if blank is None or not np.any(blank) else np.asarray(blank, dtype=bool)

    @property
    def shape(self) -> tuple:
        return (len(self.index), *self.file.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.file.dtype

    @property
    def nbytes(self) -> int:
        return len(self.index) * self.file.row_bytes

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key):
        if isinstance(key, tuple):  # rows first, then the rest of the key on what was read
            return self[key[0]][(slice(None), *key[1:]) if not np.isscalar(key[0]) else key[1:]]
        if np.isscalar(key):
            return self[np.array([key])][0]
        if isinstance(key, slice):
            sel = np.arange(*key.indices(len(self.index)))
        else:
            key = np.asarray(key)
            sel = np.flatnonzero(key) if key.dtype == bool else np.where(key < 0, key + len(self.index), key)
        out = self.file.read(self.index[sel])
        if self.blank is not None:
            out[self.blank[sel]] = 0
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def chunks(self, rows: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(rows of the chunk, their values)`` for ``rows`` in chunks of about ``chunk_bytes``."""
        step = max(1, chunk_bytes // max(1, self.file.row_bytes))
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            yield part, self[part]

    def any_rows(self, rows: np.ndarray) -> np.ndarray:
        """Per row of ``rows``: is any value non-zero (an image with an ROI)? Blank rows are not read."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=bool)
        live = np.flatnonzero(~self.blank[rows]) if self.blank is not None else np.arange(len(rows))
        pos = 0
        for part, vals in self.chunks(rows[live]):
            out[live[pos:pos + len(part)]] = vals.reshape(len(part), -1).any(axis=1)
            pos += len(part)
        return out


def open_rows(path: str | os.PathLike) -> Rows:
    return Rows(ArrayFile(path))


_STATS: dict[tuple, tuple[float, float]] = {}


def train_stats(images: Rows, rows: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of ``images[rows]`` in [0, 1] units (uint8 / 255), in one streaming
    pass (float64 sums), cached in memory and in a small JSON file beside the image file."""
    rows = np.asarray(rows, dtype=np.int64)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    if not isinstance(images, Rows):  # a hand-built domain in memory
        v = np.asarray(images[np.sort(rows)], dtype=np.float64) / scale
        return float(v.mean()), float(v.std())
    digest = hashlib.sha256(images.index[rows].tobytes()).hexdigest()[:16]
    key = (images.file.path, digest)
    if key in _STATS:
        return _STATS[key]
    marker = Path(images.file.path).with_name(f"stats-{digest}.json")
    try:
        got = json.loads(marker.read_text())
        _STATS[key] = (got["mean"], got["std"])
        return _STATS[key]
    except (OSError, ValueError, KeyError):
        pass
    total = squares = 0.0
    count = 0
    for _, vals in images.chunks(np.sort(rows), STATS_CHUNK_BYTES // (8 // images.dtype.itemsize or 1)):
        v = vals.astype(np.float64) / scale
        total += float(v.sum())
        squares += float(np.square(v).sum())
        count += v.size
    mean = total / max(count, 1)
    std = float(np.sqrt(max(squares / max(count, 1) - mean * mean, 0.0)))
    _STATS[key] = (mean, std)
    try:
        from mmpkd_core.cache import atomic_write

        atomic_write(marker, lambda p: p.write_text(json.dumps({"mean": mean, "std": std, "rows": len(rows)})))
    except OSError:  # a read-only cache: the statistics are computed again next time
        pass
    return _STATS[key]


class _BatchReader:
    """A map-style dataset whose keys are whole batches of row numbers (one read per batch)."""

    def __init__(self, images: Rows, masks: Rows | None):
        self.images, self.masks = images, masks

    def __getitem__(self, rows: np.ndarray):
        import torch

        x = torch.from_numpy(self.images[rows])
        return x if self.masks is None else (x, self.masks[rows])


def loader_workers(device) -> int:
    """Loader processes: none on a CPU (the trial's own threads are the bottleneck, and a copy of a
    batch costs less than a process hop); up to 4 on a GPU. ``MMPKD_LOADER_WORKERS`` overrides."""
    env = os.environ.get("MMPKD_LOADER_WORKERS")
    if env is not None:
        return max(0, int(env))
    return 0 if device.type != "cuda" else max(1, min(4, (os.cpu_count() or 2) // 2))


def batches(images: Rows | np.ndarray, rows: np.ndarray, batch_size: int, device, mean: float, std: float,
            masks: Rows | None = None, workers: int | None = None):
    """``images[rows]`` in batches of ``batch_size`` (in the order of ``rows``), each standardised on
    ``device``: ``(x - mean) / std`` with x in [0, 1] (uint8 / 255). With ``masks``, yields
    ``(x, masks of the batch as a bool array)``."""
    from torch.utils.data import DataLoader

    rows = np.asarray(rows, dtype=np.int64)
    keys = [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
    workers = loader_workers(device) if workers is None else workers
    loader = DataLoader(_BatchReader(images, masks), sampler=keys, batch_size=None, num_workers=workers,
                        pin_memory=device.type == "cuda", prefetch_factor=2 if workers else None)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    for item in loader:
        x, m = item if masks is not None else (item, None)
        x = x.to(device, non_blocking=True).float()  # (B, 1, H, W)
        if scale != 1.0:
            x = x / scale
        x = (x - mean) / std
        yield x if masks is None else (x, m.numpy() if hasattr(m, "numpy") else m)
