"""``synthetic_cxr``: chest-X-ray-like images with a report, for the text-teacher domain.

Each image is a grey thorax with two darker lung fields, rib shadows and a smooth texture.
Half of the images carry a finding: an opacity of radius 4-6.5 px somewhere in one lung;
its ROI mask is the disc under it. The label is "finding present". The opacity peaks brighter
than the surrounding soft tissue and spans about one 8 px patch, so a small ViT student can
both detect it and single it out with its attention; fainter opacities that only match the
soft tissue's brightness were learnable by average pooling but left the attention maps flat
(localization at chance).

What the privileged modality carries that the image labels do not
-----------------------------------------------------------------
The report describes the *true* finding and where it is ("Patchy opacity in the right lower
zone ..."), or says the lungs are clear. The image labels a student is trained on are wrong
for a fraction ``label_noise`` of the training images (default 0.2), as when labels are mined
automatically; the report is never wrong. A teacher reading the report therefore knows the
truth where the labels lie, and its soft targets can tell a student which training images
really contain the opacity -- that is how distillation can sharpen localization here.
At ``label_noise = 0`` the report adds nothing about presence that the labels lack (only the
coarse location in words, which the text teacher cannot pass through logits).
Validation and test labels are always the truth.

Wrong labels alone leave a student nothing else to look at: it learns the opacity more slowly but
its attention has nowhere to go but the opacity, so localization moves little and noisily (the
known-answer check measured a gain in AUROC, 0.95 against 0.87, without a consistent gain in
localization). Real labels are wrong in a structured way: the process that mislabels an image
also leaves traces on it (a portable-film marker, a device, a hospital's burn-in). ``shortcut``
(``data.shortcut``, default 0: none) adds such a trace: a bright marker in the top-left corner,
present on a training image with probability ``shortcut`` if its *given* label is positive and
``1 - shortcut`` if negative; on validation and test images it is present at random, independent
of the truth. A student trained on the given labels can then predict them from the marker, and
looks there; soft targets from a teacher that knows the truth make the marker useless and leave
the opacity as the only cue. With ``label_noise = 0`` the marker follows the truth, which the
labels already say: a privileged teacher adds nothing.
"""
from __future__ import annotations

import numpy as np

from mmpkd_core.data._draw import ellipse, grid, lesion, smooth_noise
from mmpkd_core.data.base import DOMAINS, DataConfig, Domain, DomainData, noisy_training_labels, split_labels

DEFAULT_LABEL_NOISE = 0.2

_POSITIVE = [
    "{size} {kind} in the {side} {zone} zone, {impression}.",
    "There is a {size} {kind} projecting over the {side} {zone} lung. {Impression}.",
    "{Kind} at the {side} {zone} lung zone. Findings {impression2}.",
]
_NEGATIVE = [
    "Lungs are clear. No focal consolidation, effusion or pneumothorax.",
    "No acute cardiopulmonary process.",
    "Clear lungs without focal opacity. Heart size is normal.",
    "No focal airspace disease. No pleural effusion.",
]
_KIND = ["opacity", "consolidation", "nodular opacity", "airspace opacity"]
_SIZE = ["small", "subtle", "patchy", "faint", "focal"]
_IMPRESSION = ["concerning for pneumonia", "likely infection", "possibly atelectasis", "suspicious for a nodule"]


def _reports(rng, true, side, zone) -> list[str]:
    out = []
    for y, s, z in zip(true, side, zone):
        if y == 0:
            out.append(_NEGATIVE[rng.integers(len(_NEGATIVE))])
            continue
        imp = _IMPRESSION[rng.integers(len(_IMPRESSION))]
        kind = _KIND[rng.integers(len(_KIND))]
        out.append(_POSITIVE[rng.integers(len(_POSITIVE))].format(
            size=_SIZE[rng.integers(len(_SIZE))].capitalize(), kind=kind, Kind=kind.capitalize(),
            side=s, zone=z, impression=imp, Impression=imp.capitalize(), impression2=imp,
        ))
    return out


def generate(cfg: DataConfig) -> DomainData:
    rng = np.random.default_rng(cfg.seed)
    split = split_labels(cfg)
    n, S = len(split), cfg.image_size
    yy, xx = grid(n, S)
    c = S / 2
    # thorax, lungs (image left = patient's right), rib shadows, texture; soft tissue ~0.35,
    # lungs ~0.18, so an opacity (+0.35-0.55 at its centre) is the brightest thing in the image
    img = 0.35 * ellipse(yy, xx, np.full(n, c), np.full(n, c), np.full(n, 0.48 * S), np.full(n, 0.46 * S))
    lung_ry, lung_rx = 0.33 * S, 0.15 * S
    lung_cy = c + rng.uniform(-0.04, 0.04, n) * S
    left = ellipse(yy, xx, lung_cy, c - 0.2 * S, np.full(n, lung_ry), np.full(n, lung_rx))
    right = ellipse(yy, xx, lung_cy, c + 0.2 * S, np.full(n, lung_ry), np.full(n, lung_rx))
    lungs = left | right
    img = img - 0.17 * lungs
    img = img + 0.05 * lungs * np.sin(2 * np.pi * yy / (S / 6) + rng.uniform(0, 6.3, n)[:, None, None])
    img = img + smooth_noise(rng, n, S, sigma=1.5, scale=0.05)

    true = (rng.random(n) < 0.5).astype(np.int64)
    on_left = rng.random(n) < 0.5  # image left
    cx = np.where(on_left, c - 0.2 * S, c + 0.2 * S) + rng.uniform(-0.07, 0.07, n) * S
    cy = lung_cy + rng.uniform(-0.22, 0.22, n) * S
    radius = rng.uniform(4.0, 6.5, n)
    contrast = rng.uniform(0.35, 0.55, n) * true
    blob, roi = lesion(yy, xx, cy, cx, radius, contrast)
    img = img + blob
    masks = roi & (true[:, None, None] == 1)
    img = img + rng.normal(0, 0.03, img.shape).astype(np.float32)

    side = np.where(on_left, "right", "left")  # radiological convention
    zone = np.where(cy < lung_cy - 0.07 * S, "upper", np.where(cy > lung_cy + 0.07 * S, "lower", "mid"))
    noise = DEFAULT_LABEL_NOISE if cfg.label_noise is None else cfg.label_noise
    labels = noisy_training_labels(true, split, noise, rng)
    if cfg.shortcut > 0:  # its own stream: the images without a marker stay bit for bit as they were
        srng = np.random.default_rng([cfg.seed, 7])
        p = np.where(split == "train", np.where(labels == 1, cfg.shortcut, 1 - cfg.shortcut), 0.5)
        marked = srng.random(n) < p
        m = max(2, S // 12)
        img[marked, 1:1 + m, 1:1 + m] = 0.9
    return DomainData(
        domain="synthetic_cxr", modality="text",
        images=np.clip(img, 0, 1).astype(np.float32)[:, None], labels=labels, true_labels=true,
        masks=masks, split=split, image_ids=np.array([f"cxr{cfg.seed}-{i:06d}" for i in range(n)]),
        text=_reports(rng, true, side, zone),
    )


DOMAINS.register("synthetic_cxr")(Domain("synthetic_cxr", "text", generate, DEFAULT_LABEL_NOISE))
