"""Vectorised drawing helpers shared by the synthetic domains."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def grid(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.broadcast_to(yy, (n, size, size)), np.broadcast_to(xx, (n, size, size))


def smooth_noise(rng, n: int, size: int, sigma: float, scale: float) -> np.ndarray:
    """Low-frequency texture: white noise blurred within each image (not across the batch)."""
    noise = rng.standard_normal((n, size, size)).astype(np.float32)
    noise = gaussian_filter(noise, sigma=(0, sigma, sigma))
    noise /= noise.std(axis=(1, 2), keepdims=True) + 1e-8
    return scale * noise


def ellipse(yy, xx, cy, cx, ry, rx) -> np.ndarray:
    """(N, H, W) bool inside ellipses with per-image centres and radii (each shape (N,))."""
    def e(a):
        return np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)

    return ((yy - e(cy)) / e(ry)) ** 2 + ((xx - e(cx)) / e(rx)) ** 2 <= 1.0


def lesion(yy, xx, cy, cx, radius, contrast, spikes=None, phase=None):
    """A lesion blob and its ROI mask.

    The intensity is ``contrast * exp(-0.5 (d / (0.6 r(theta)))^2)``; the ROI is ``d <= r(theta)``.
    ``spikes`` (N,) adds a star-shaped radius modulation ``r(1 + 0.35 sin(k theta + phase))``
    where ``spikes > 0`` (a spiculated margin); zero keeps the blob round.
    """
    def e(a):
        return np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)

    dy, dx = yy - e(cy), xx - e(cx)
    d = np.sqrt(dy**2 + dx**2)
    r = e(radius) * np.ones_like(d)
    if spikes is not None:
        theta = np.arctan2(dy, dx)
        mod = 0.35 * np.sin(e(spikes) * theta + e(phase))
        r = r * (1.0 + np.where(e(spikes) > 0, mod, 0.0))
    blob = e(contrast) * np.exp(-0.5 * (d / (0.6 * r)) ** 2)
    return blob.astype(np.float32), d <= r
