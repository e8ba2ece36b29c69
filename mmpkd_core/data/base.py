"""The record every domain yields, and the on-disk cache that all trials share."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable

import numpy as np
import pandas as pd
from annotated_types import Ge, Le

from mmpkd_core.cache import atomic_write, cache_root, cache_version  # noqa: F401  (their old home)
from mmpkd_core.hashing import stable_hash, without_defaults
from mmpkd_core.registry import Registry

if TYPE_CHECKING:
    from mmpkd_core.data.stream import Rows
from mmpkd_core.version import SCIENCE_VERSION, describe, notify, stamp

SPLITS = ("train", "val", "test")


# DataConfig fields added after data caches and baselines were stored, with the value they implicitly had
LATER_DATA_FIELDS = [("shortcut", 0.0), ("root", None), ("options", "{}"), ("skip_bad", False)]


@dataclass(frozen=True)
class DataConfig:
    """What determines a domain's data: same config, same arrays, bit for bit.

    Each field is declared here once, with its bounds (``annotated_types``) beside it: a study spec's
    ``data`` section (``study.spec.DataSpec``) is generated from these fields and checks those bounds."""

    n_train: Annotated[int, Ge(10)] = 600
    n_val: Annotated[int, Ge(10)] = 150
    n_test: Annotated[int, Ge(10)] = 150
    image_size: Annotated[int, Ge(16), Le(1024)] = 48
    seed: int = 0
    # Fraction of *training* image labels that are wrong while the privileged modality
    # states the truth. None = the domain's documented default.
    label_noise: Annotated[float | None, Ge(0.0), Le(0.5)] = None
    # synthetic_cxr: a corner marker that follows the *given* training label with this probability
    # (and is absent/present at random on validation and test images); 0 = no marker. See its docstring.
    shortcut: Annotated[float, Ge(0.0), Le(1.0)] = 0.0
    # Real domains only: the data set's folder, and the domain's options as sorted JSON (a string,
    # so that the config stays hashable; a spec gives them as a mapping). Synthetic domains ignore both.
    root: str | None = None
    options: str = "{}"
    skip_bad: bool = False  # real domains: skip unreadable inputs (listed in the prepared cache) instead of stopping

    def key(self, domain: str) -> str:
        spec = DOMAINS.get(domain) if domain in DOMAINS else None
        # a real data set: its tables are part of the key (their digest appended to the JSON before hashing)
        tables = spec.fingerprint(self) if spec is not None and spec.fingerprint is not None else ""
        return stable_hash({"domain": domain, **self.identity()}, suffix=tables)

    @classmethod
    def from_section(cls, options: dict | None = None, root: str | None = None, **fields) -> "DataConfig":
        """From a spec's ``data`` section (or the CLI's flags): options as sorted JSON, the root made
        absolute (Ray workers run elsewhere)."""
        return cls(options=json.dumps(options or {}, sort_keys=True),
                   root=str(Path(root).expanduser().resolve()) if root else None, **fields)

    def identity(self) -> dict:
        """The fields, less the real-data ones at their defaults: keys made before those existed stay valid."""
        return without_defaults(asdict(self), LATER_DATA_FIELDS)

    def option_dict(self) -> dict:
        return json.loads(self.options)


@dataclass(frozen=True)
class DomainData:
    """One domain's images, labels, privileged modality and ROI masks, all splits.

    ``images`` and ``masks`` are ``Rows`` of files on disk (``mmpkd_core.data.stream``): indexing reads
    only the rows asked for. A generator may hand in plain arrays; ``load_domain`` returns them on disk."""

    domain: str
    modality: str  # "text" | "tabular": what the privileged modality is
    images: "Rows | np.ndarray"  # (N, 1, H, W): uint8 (real domains, /255) or float32 in [0, 1] (synthetic)
    labels: np.ndarray  # (N,) int64, the labels a student is trained on (noisy on train)
    true_labels: np.ndarray  # (N,) int64, ground truth (test labels are always the truth)
    masks: "Rows | np.ndarray"  # (N, H, W) bool ROI; all False when the image has no finding
    split: np.ndarray  # (N,) str in SPLITS
    image_ids: np.ndarray  # (N,) str, stable across runs
    text: list[str] | None = None  # one report per image (modality "text")
    table: pd.DataFrame | None = None  # one metadata row per image (modality "tabular")
    subset: str = ""  # the training subset taken under data.options (max_train), in words; "" = all
    _roi: dict = field(default_factory=dict, init=False, compare=False, repr=False)  # split -> ROI rows

    def index(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def roi_index(self, split: str) -> np.ndarray:
        """The images of ``split`` that have an ROI (read once, a chunk at a time)."""
        if split not in self._roi:
            idx = self.index(split)
            m = self.masks
            has = m.any_rows(idx) if hasattr(m, "any_rows") else np.asarray(m[idx]).any(axis=(1, 2))
            self._roi[split] = idx[has]
        return self._roi[split]


@dataclass(frozen=True)
class Domain:
    """A synthetic domain has ``generate``. A real one has ``plan`` (the images to decode and their
    metadata rows, for its prepared cache), ``view`` (a ``DomainData`` from that cache under the
    config's options), ``fingerprint`` (a digest of its tables) and ``synthetic`` (its stand-in when
    no ``data.root`` is given); ``mmpkd_core.data.prepared`` does the caching for all of them."""

    name: str
    modality: str
    generate: Callable[[DataConfig], DomainData] | None
    default_label_noise: float
    plan: Callable[[DataConfig], tuple] | None = None  # -> (items, meta with image_id, skipped inputs)
    view: Callable[..., DomainData] | None = None  # (cfg, images, masks, meta) -> DomainData
    fingerprint: Callable[[DataConfig], str] | None = None
    synthetic: str | None = None
    options: type | None = None  # a pydantic model of the domain's ``data.options``

    @property
    def is_real(self) -> bool:
        return self.plan is not None


DOMAINS: Registry[Domain] = Registry("domain")


def split_labels(cfg: DataConfig) -> np.ndarray:
    return np.array(["train"] * cfg.n_train + ["val"] * cfg.n_val + ["test"] * cfg.n_test)


def noisy_training_labels(true: np.ndarray, split: np.ndarray, noise: float, rng) -> np.ndarray:
    """Flip a fraction ``noise`` of the training labels; val and test keep the truth."""
    labels = true.copy()
    train = np.flatnonzero(split == "train")
    n_flip = int(round(noise * len(train)))
    flip = rng.choice(train, size=n_flip, replace=False)
    labels[flip] = 1 - labels[flip]
    return labels


def training_subset(split: np.ndarray, labels: np.ndarray, groups: np.ndarray, max_train: int, stratify: str,
                    seed: int) -> tuple[np.ndarray, str]:
    """A reproducible subset of about ``max_train`` training images, taken by whole patients (``groups``)
    so that no patient is split, stratified (``stratify="label"``) so that each label keeps its share:
    a patient's stratum is its highest training label, and within each stratum patients are taken in a
    seeded random order until the stratum's share of ``max_train`` is reached. Validation and test images
    are all kept. Returns the rows to keep and the subset in words (for the overview and the report)."""
    train = np.flatnonzero(split == "train")
    keep = split != "train"
    if max_train >= len(train):
        keep[:] = True
        return keep, f"training subset: all {len(train):,} training images (data.options.max_train {max_train:,})"
    rng = np.random.default_rng([seed, 11])
    g = pd.Series(labels[train] if stratify == "label" else np.zeros(len(train), int)).groupby(groups[train])
    patient_stratum, patient_size = g.max(), g.size()
    taken_patients = 0
    for stratum in np.unique(patient_stratum.to_numpy()):
        members = patient_stratum.index[patient_stratum.to_numpy() == stratum].to_numpy()
        target = max_train * patient_size[members].sum() / len(train)
        order = members[rng.permutation(len(members))]
        sizes = patient_size[order].to_numpy()
        n_take = int(np.searchsorted(np.cumsum(sizes), target, side="right"))  # whole patients, up to the target
        n_take = max(n_take, 1)
        taken_patients += n_take
        keep[train[np.isin(groups[train], order[:n_take])]] = True
    n_kept = int(keep[train].sum())
    how = "stratified by label" if stratify == "label" else "not stratified"
    return keep, (f"training subset: {n_kept:,} of {len(train):,} training images ({taken_patients:,} of "
                  f"{len(patient_size):,} patients, whole patients, {how}, seed {seed}; data.options.max_train "
                  f"{max_train:,}); validation and test images all kept")


PREPARED_COUNT = {"generated": 0}  # how many times data was actually generated in this process


def domain_folder(domain: str, cfg: DataConfig, cache_dir=None) -> Path:
    """Where the domain's prepared arrays live: ``images.npy``, ``masks.npy`` and ``arrays.npz`` (labels,
    split, image ids) for a synthetic domain; the prepared cache (``images.npy``, ``masks.npy``, ``meta.parquet``)
    for a real one."""
    spec = DOMAINS.get(domain)
    if spec.is_real:
        from mmpkd_core.data.prepared import prepared_path

        return prepared_path(spec, cfg, cache_dir)
    return cache_root(cache_dir) / "data" / f"{domain}-{cfg.key(domain)}"


def load_domain(domain: str, cfg: DataConfig, cache_dir=None) -> DomainData:
    """The domain's data from the shared cache, generating it once if absent."""
    spec = DOMAINS.get(domain)
    if spec.is_real:
        from mmpkd_core.data.prepared import ensure_prepared, open_prepared

        return spec.view(cfg, *open_prepared(ensure_prepared(spec, cfg, cache_dir)))
    folder = domain_folder(domain, cfg, cache_dir)
    arrays = folder / "arrays.npz"
    made_by = cache_version(folder / "science.json")
    if arrays.exists() and made_by != SCIENCE_VERSION:
        notify(f"data cache {folder.name} made by {describe(made_by)}; this engine is science version "
               f"{SCIENCE_VERSION}: generating it again")
    # a cache from before images were streamed kept them inside arrays.npz: made again, same numbers
    old_layout = arrays.exists() and not (folder / "images.npy").exists()
    if not arrays.exists() or made_by != SCIENCE_VERSION or old_layout:
        data = spec.generate(cfg)
        PREPARED_COUNT["generated"] += 1
        _save(folder, data)
    return _load(folder, domain, spec.modality)


def _save(folder: Path, d: DomainData) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "arrays.npz").exists():  # another science version's arrays go first: never under a new marker
        (folder / "arrays.npz").unlink()
    for stale in folder.glob("stats-*.json"):
        stale.unlink()
    atomic_write(folder / "science.json", lambda p: p.write_text(json.dumps(stamp())))
    if d.text is not None:
        atomic_write(folder / "text.json", lambda p: p.write_text(json.dumps(d.text)))
    if d.table is not None:
        atomic_write(folder / "table.parquet", lambda p: d.table.to_parquet(p, index=False))

    for name, arr in (("images.npy", d.images), ("masks.npy", d.masks)):
        atomic_write(folder / name, lambda p, arr=arr: _save_npy(p, arr))

    def write_arrays(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, labels=d.labels, true_labels=d.true_labels, split=d.split, image_ids=d.image_ids)

    atomic_write(folder / "arrays.npz", write_arrays)  # last: its presence marks the cache complete


def _save_npy(path: Path, arr) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to the temporary name
        np.save(f, np.ascontiguousarray(arr))


def _load(folder: Path, domain: str, modality: str) -> DomainData:
    from mmpkd_core.data.stream import open_rows

    with np.load(folder / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(images=open_rows(folder / "images.npy"), masks=open_rows(folder / "masks.npy"))
    text = json.loads((folder / "text.json").read_text()) if (folder / "text.json").exists() else None
    table = pd.read_parquet(folder / "table.parquet") if (folder / "table.parquet").exists() else None
    return DomainData(domain=domain, modality=modality, text=text, table=table, **arrays)
