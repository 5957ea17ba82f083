"""Covariate shifts: seeded, deterministic corruptions of uint8 image arrays, severities 1–5.

In the spirit of MNIST-C / CIFAR-10-C. ``apply(x, "rotate", severity=3, seed=0)`` returns a new
uint8 array of the same shape; the same (shift, severity, seed) always gives the same bytes.

=============  ========================================================
shift          what it does (parameter per severity 1..5)
=============  ========================================================
``rotate``     rotation by ±(10, 20, 30, 45, 60) degrees, sign random
``noise``      additive Gaussian noise, sigma (8, 16, 24, 40, 64) / 255
``blur``       Gaussian blur, radius (0.5, 0.8, 1.0, 1.5, 2.0) px
``contrast``   contrast scaled to (0.6, 0.45, 0.3, 0.2, 0.1) around the mean
``jpeg``       JPEG re-encoding at quality (30, 20, 12, 8, 5)
``pixelate``   down/up-sampling by factor (0.8, 0.65, 0.5, 0.4, 0.3)
=============  ========================================================
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

PARAMS = {
    "rotate": (10, 20, 30, 45, 60),
    "noise": (8, 16, 24, 40, 64),
    "blur": (0.5, 0.8, 1.0, 1.5, 2.0),
    "contrast": (0.6, 0.45, 0.3, 0.2, 0.1),
    "jpeg": (30, 20, 12, 8, 5),
    "pixelate": (0.8, 0.65, 0.5, 0.4, 0.3),
}
SHIFTS = tuple(PARAMS)


def _pil(im: np.ndarray) -> Image.Image:
    return Image.fromarray(im, "RGB" if im.ndim == 3 else "L")


def apply(x: np.ndarray, shift: str, severity: int = 3, seed: int = 0) -> np.ndarray:
    """Apply ``shift`` at ``severity`` (1..5) to uint8 images ``x`` (N,H,W) or (N,H,W,3)."""
    if shift not in PARAMS:
        raise KeyError(f"unknown shift {shift!r}; known: {SHIFTS}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    if x.dtype != np.uint8:
        raise TypeError(f"shifts take uint8 images, got {x.dtype}")
    p = PARAMS[shift][severity - 1]
    rng = np.random.default_rng([seed, SHIFTS.index(shift), severity])
    if shift == "noise":
        y = x.astype(np.float32) + rng.normal(0.0, p, size=x.shape).astype(np.float32)
        return np.clip(np.round(y), 0, 255).astype(np.uint8)
    if shift == "contrast":
        axes = tuple(range(1, x.ndim))
        m = x.astype(np.float32).mean(axis=axes, keepdims=True)
        return np.clip(np.round((x - m) * p + m), 0, 255).astype(np.uint8)
    out = np.empty_like(x)
    h, w = x.shape[1:3]
    signs = rng.choice((-1.0, 1.0), size=len(x))
    for i, im in enumerate(x):
        pim = _pil(im)
        if shift == "rotate":
            pim = pim.rotate(signs[i] * p, resample=Image.BILINEAR)
        elif shift == "blur":
            pim = pim.filter(ImageFilter.GaussianBlur(p))
        elif shift == "jpeg":
            buf = io.BytesIO()
            pim.save(buf, "JPEG", quality=int(p))
            pim = Image.open(io.BytesIO(buf.getvalue()))
            pim.load()
        elif shift == "pixelate":
            pim = pim.resize((max(1, int(w * p)), max(1, int(h * p))), Image.BOX).resize((w, h), Image.NEAREST)
        out[i] = np.asarray(pim)
    return out
