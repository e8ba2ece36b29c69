"""``synthetic_ddsm``: mammogram-like images with a CBIS-DDSM metadata row, for the tabular teacher.

Each image is one breast seen from the side of its laterality: a half-ellipse of tissue whose
texture follows the breast density (1-4), a pectoral-muscle wedge in MLO views, and one mass of
radius 4-6.5 px somewhere in the tissue; its ROI mask is the region under the mass. The label is
the pathology: malignant (1) or benign (0). Malignant masses are spiculated and, on average,
brighter; benign ones are round and fainter; the two overlap, as in real mammography.
The mass spans about one 8 px patch and the wedge is kept dimmer than most masses, so a small
ViT student learns the task quickly and its attention settles on the mass; smaller, fainter
masses were learned slowly and left the attention maps at chance.

What the privileged modality carries that the image labels do not
-----------------------------------------------------------------
The metadata row has the CBIS-DDSM columns: breast density, laterality, view, abnormality
type, mass shape, mass margins, BI-RADS assessment, subtlety. Shape, margins and assessment
are drawn from the *true* pathology, so a tabular teacher predicts malignancy well -- but no
column says *where* the mass is. With clean labels (``label_noise = 0``, the default) the
teacher's soft targets say no more about the lesion than the label does, so distillation is
not expected to move localization; this mirrors the reference study, which found no gain on
mammography. Raising ``label_noise`` flips that fraction of the training labels while the
metadata keeps the truth, which gives the teacher something the labels lack.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mmpkd_core.data._draw import ellipse, grid, lesion, smooth_noise
from mmpkd_core.data.base import DOMAINS, DataConfig, Domain, DomainData, noisy_training_labels, split_labels

DEFAULT_LABEL_NOISE = 0.0
_SHAPES = {1: ["IRREGULAR", "LOBULATED", "ARCHITECTURAL_DISTORTION"], 0: ["OVAL", "ROUND", "LOBULATED"]}
_MARGINS = {1: ["SPICULATED", "ILL_DEFINED", "MICROLOBULATED"], 0: ["CIRCUMSCRIBED", "OBSCURED", "ILL_DEFINED"]}
_SHAPE_P = {1: [0.6, 0.3, 0.1], 0: [0.5, 0.3, 0.2]}
_MARGIN_P = {1: [0.5, 0.35, 0.15], 0: [0.55, 0.3, 0.15]}
_ASSESS_P = {1: [0.05, 0.10, 0.45, 0.40], 0: [0.25, 0.40, 0.30, 0.05]}  # BI-RADS 2, 3, 4, 5


def _pick(rng, truth, options, probs):
    return np.array([options[y][rng.choice(len(options[y]), p=probs[y])] for y in truth])


def generate(cfg: DataConfig) -> DomainData:
    rng = np.random.default_rng(cfg.seed)
    split = split_labels(cfg)
    n, S = len(split), cfg.image_size
    yy, xx = grid(n, S)
    left = rng.random(n) < 0.5  # breast attached to the image's left edge
    mlo = rng.random(n) < 0.5
    density = rng.integers(1, 5, n)

    edge = np.where(left, 0.0, S - 1.0)
    tissue = ellipse(yy, xx, np.full(n, S / 2), edge, np.full(n, 0.47 * S), np.full(n, 0.8 * S))
    img = tissue * (0.30 + 0.04 * density[:, None, None])
    texture = smooth_noise(rng, n, S, sigma=1.2, scale=1.0) * (0.01 + 0.008 * density)[:, None, None]
    img = img + tissue * texture
    # pectoral wedge in the upper corner on the chest-wall side (MLO only)
    dist_wall = np.where(left[:, None, None], xx, S - 1 - xx)
    pect = (dist_wall + yy * 0.9 < 0.35 * S) & mlo[:, None, None]
    img = np.where(pect, 0.6, img)  # bright, but below most masses' peaks

    true = (rng.random(n) < 0.5).astype(np.int64)
    # mass centre inside the tissue, away from the wedge and the skin line
    depth = rng.uniform(0.15, 0.55, n) * S
    cx = np.where(left, depth, S - 1 - depth)
    cy = S / 2 + rng.uniform(-0.28, 0.28, n) * S
    radius = rng.uniform(4.0, 6.5, n)
    contrast = np.where(true == 1, rng.uniform(0.35, 0.55, n), rng.uniform(0.15, 0.35, n))
    spikes = np.where(true == 1, rng.integers(5, 9, n), 0)
    blob, roi = lesion(yy, xx, cy, cx, radius, contrast, spikes=spikes, phase=rng.uniform(0, 6.3, n))
    img = img + blob
    img = img + rng.normal(0, 0.025, img.shape).astype(np.float32)

    subtlety = np.clip(np.round(1 + (contrast - 0.15) / 0.40 * 4 + rng.normal(0, 0.6, n)), 1, 5).astype(int)
    table = pd.DataFrame({
        "breast_density": density,
        "left_or_right_breast": np.where(left, "LEFT", "RIGHT"),
        "image_view": np.where(mlo, "MLO", "CC"),
        "abnormality_type": "mass",
        "mass_shape": _pick(rng, true, _SHAPES, _SHAPE_P),
        "mass_margins": _pick(rng, true, _MARGINS, _MARGIN_P),
        "assessment": np.array([rng.choice([2, 3, 4, 5], p=_ASSESS_P[y]) for y in true]),
        "subtlety": subtlety,
    })
    noise = DEFAULT_LABEL_NOISE if cfg.label_noise is None else cfg.label_noise
    labels = noisy_training_labels(true, split, noise, rng)
    return DomainData(
        domain="synthetic_ddsm", modality="tabular",
        images=np.clip(img, 0, 1).astype(np.float32)[:, None], labels=labels, true_labels=true,
        masks=roi, split=split, image_ids=np.array([f"ddsm{cfg.seed}-{i:06d}" for i in range(n)]),
        table=table,
    )


DOMAINS.register("synthetic_ddsm")(Domain("synthetic_ddsm", "tabular", generate, DEFAULT_LABEL_NOISE))
