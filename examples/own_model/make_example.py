"""Make the example's data and model (a few seconds on a CPU; no download).

    python examples/own_model/make_example.py [FOLDER]     # default: beside this file

writes, in FOLDER:

* ``images/{fit,cal,test}/<colour>/*.png`` — the ID classes ``blue``, ``green``, ``red``: a coloured square on a
  noisy grey background, 32x32 RGB PNGs (the harness resizes them to the model's 16x16);
* ``images/dim/<colour>/*.png`` — the same classes, dimmed and noisier (a covariate shift, with labels);
* ``images/stripes/*.png`` — grey stripes, no classes (far OOD);
* ``model.pt`` — a small CNN trained on other samples of the ID classes, saved as TorchScript.

``suite.toml`` beside this file runs them: ``oodbench run FOLDER/suite.toml``.
"""
from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

CLASSES = ("blue", "green", "red")  # sorted: class sub-folders, sorted by name, are the model's classes 0, 1, 2
CHANNEL = (2, 1, 0)  # the RGB channel of each class's colour
SIZE, INPUT = 32, 16


def squares(n: int, rng, dim: float = 1.0, noise: float = 20.0):
    y = rng.integers(0, 3, n)
    x = np.clip(rng.normal(110, noise, (n, SIZE, SIZE, 3)), 0, 255)
    for i, c in enumerate(y):
        r, s = rng.integers(0, SIZE - 14, 2)
        colour = np.full(3, 60.0)
        colour[CHANNEL[c]] = 230
        x[i, r:r + 14, s:s + 14] = colour * dim + rng.normal(0, noise, 3)
    return np.clip(x, 0, 255).astype(np.uint8), y


def stripes(n: int, rng):
    t = np.arange(SIZE)
    x = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        f, phase = rng.uniform(0.3, 1.2), rng.uniform(0, 6)
        wave = 127 + 100 * np.sin(f * t + phase)
        img = wave[None, :] if i % 2 else wave[:, None]
        x[i] = np.broadcast_to(img[..., None], (SIZE, SIZE, 3)).astype(np.uint8)
    return x


def save(folder: Path, x, y=None):
    for i, im in enumerate(x):
        sub = folder / CLASSES[y[i]] if y is not None else folder
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(sub / f"{i:04d}.png")


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 3))


def train(x, y) -> nn.Module:
    small = np.stack([np.asarray(Image.fromarray(im).resize((INPUT, INPUT), Image.BILINEAR)) for im in x])
    xt = torch.tensor(small).permute(0, 3, 1, 2).float() / 255
    yt = torch.tensor(y)
    torch.manual_seed(0)
    model = net()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(15):
        for i in range(0, len(xt), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i:i + 64]), yt[i:i + 64]).backward()
            opt.step()
    return model.eval()


def main(folder) -> Path:
    folder = Path(folder)
    rng = np.random.default_rng(0)
    if (folder / "images").exists():
        shutil.rmtree(folder / "images")
    for part, n in (("fit", 60), ("cal", 60), ("test", 60)):
        save(folder / "images" / part, *squares(n, rng))
    save(folder / "images" / "dim", *squares(60, rng, dim=0.6, noise=35.0))
    save(folder / "images" / "stripes", stripes(60, rng))
    with warnings.catch_warnings():  # torch.jit is deprecated in new torch versions but still works
        warnings.simplefilter("ignore")
        torch.jit.script(train(*squares(300, rng))).save(str(folder / "model.pt"))
    return folder


if __name__ == "__main__":
    out = main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    print(f"wrote the example's images and model.pt in {out}")
