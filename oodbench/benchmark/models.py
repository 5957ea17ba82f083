"""Classifiers, their training recipes, and a checkpoint cache.

Every architecture takes float images in [0, 1] of shape (N, C, H, W) and normalises them inside
(so detectors that perturb inputs, like ODIN, work in pixel space), and offers the same contract:

* ``forward(x)`` → logits; ``forward_features(x)`` → (logits, penultimate features);
* ``feature_maps(x)`` → the 4-D activations that the head pools (``head(maps)`` → logits);
* ``fc``: the final ``nn.Linear``; ``tap_layers``: default layer names for per-layer statistics.

Checkpoints are cached under ``<cache>/models/`` keyed by a hash of (architecture, recipe, training
data checksum, seed); a checkpoint that fails its checksum is retrained, not trusted.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from oodbench.benchmark.io import atomic_write, sha256_bytes, write_json


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Shared contract; subclasses define ``feature_maps`` and ``head``."""

    tap_layers: tuple = ()
    num_classes: int = 10

    def feature_maps(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def pool(self, maps):
        return torch.flatten(F.adaptive_avg_pool2d(maps, 1), 1)

    def head(self, maps):
        return self.fc(self.pool(maps))

    def forward_features(self, x):
        z = self.pool(self.feature_maps(x))
        return self.fc(z), z

    def features(self, x):
        return self.forward_features(x)[1]

    def forward(self, x):
        return self.forward_features(x)[0]


class LeNet(Classifier):
    """LeNet for 28×28 grey images (Caffe variant: conv 20-50, fc 500, 10 classes).

    Penultimate features are the 500 ReLU outputs of ``fc1``; ``feature_maps`` returns them as
    (N, 500, 1, 1) so that activation-shaping detectors (ReAct, ASH) act on the penultimate layer.
    """

    tap_layers = ("conv1", "conv2", "fc1", "fc")

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.norm = Normalize([0.1307] * in_channels, [0.3081] * in_channels)
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc = nn.Linear(500, num_classes)

    def feature_maps(self, x):
        x = F.max_pool2d(F.relu(self.conv1(self.norm(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return x[:, :, None, None]


class SmallCNN(Classifier):
    """A small CNN for 32×32 RGB on CPU: three conv-BN-ReLU stages (32, 64, 128) with max-pooling,
    global average pooling, 128-d features, linear head. About 10 M multiply-adds per image."""

    tap_layers = ("block1", "block2", "block3", "fc")

    def __init__(self, num_classes=10, in_channels=3, width=(32, 64, 128)):
        super().__init__()
        self.norm = Normalize([0.4914, 0.4822, 0.4465][:in_channels], [0.2470, 0.2435, 0.2616][:in_channels])
        c = [in_channels, *width]
        self.block1 = nn.Sequential(nn.Conv2d(c[0], c[1], 3, padding=1, bias=False), nn.BatchNorm2d(c[1]), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(c[1], c[2], 3, padding=1, bias=False), nn.BatchNorm2d(c[2]), nn.ReLU())
        self.block3 = nn.Sequential(nn.Conv2d(c[2], c[3], 3, padding=1, bias=False), nn.BatchNorm2d(c[3]), nn.ReLU())
        self.fc = nn.Linear(c[3], num_classes)

    def feature_maps(self, x):
        x = F.max_pool2d(self.block1(self.norm(x)), 2)
        x = F.max_pool2d(self.block2(x), 2)
        return self.block3(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(Classifier):
    """ResNet-18 for 32×32 images (3×3 stem, no max-pool), as OpenOOD's ``resnet18_32x32``: 512-d features."""

    tap_layers = ("layer1", "layer2", "layer3", "layer4", "fc")

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.norm = Normalize([0.4914, 0.4822, 0.4465][:in_channels], [0.2470, 0.2435, 0.2616][:in_channels])
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cfg, cin, layers = [(64, 1), (128, 2), (256, 2), (512, 2)], 64, []
        for cout, stride in cfg:
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, num_classes)

    def feature_maps(self, x):
        x = F.relu(self.bn1(self.conv1(self.norm(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


ARCHITECTURES = {"lenet": LeNet, "smallcnn": SmallCNN, "resnet18": ResNet18}


@dataclass(frozen=True)
class Recipe:
    """A training recipe. ``optimizer`` is "adam" or "sgd" (Nesterov); the schedule is linear warm-up
    then cosine; ``augment`` is random crop (pad 4) + horizontal flip for RGB sets."""

    name: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = False


RECIPES = {
    "lenet": Recipe("lenet", epochs=4, batch_size=128, lr=1e-3),
    "smallcnn": Recipe("smallcnn", epochs=12, batch_size=128, lr=0.05, optimizer="sgd", weight_decay=5e-4,
                       warmup_epochs=1, augment=True),
    "resnet18": Recipe("resnet18", epochs=100, batch_size=512, lr=0.4, optimizer="sgd", weight_decay=5e-4,
                       warmup_epochs=5, label_smoothing=0.1, augment=True),
}


def recipe_for(arch: str, override: str | None = None) -> Recipe:
    r = RECIPES[arch]
    if override == "smoke":
        r = replace(r, name=r.name + "-smoke", epochs=1, warmup_epochs=0)
    return r


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W) or (N,H,W,3) → float (N,C,H,W) in [0, 1]."""
    x = np.ascontiguousarray(x)
    t = torch.from_numpy(x if x.flags.writeable else x.copy())
    t = t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.float().div_(255.0)


def build(arch: str, in_channels: int, num_classes: int = 10) -> Classifier:
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels)


def checkpoint_key(arch: str, recipe: Recipe, data_checksum: str, seed: int) -> str:
    blob = json.dumps({"arch": arch, "recipe": asdict(recipe), "data": data_checksum, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _augment(xb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = xb.shape
    flip = torch.rand(n, generator=g) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
    padded = F.pad(xb, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=g)
    dy = torch.randint(0, 9, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None]).clamp_max(h + 7)
    cols = (dx[:, None] + torch.arange(w)[None]).clamp_max(w + 7)
    idx_n = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def _uint8_nchw(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x) if np.asarray(x).flags.writeable else np.array(x))
    return t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def train(model: Classifier, x: np.ndarray, y: np.ndarray, recipe: Recipe, seed: int, device="cpu",
          progress=True) -> dict:
    """Train ``model`` on uint8 images with the recipe; returns a log dict (time, last loss).

    The images stay uint8 on the device and are converted per batch (4× less memory; on a GPU the
    whole set lives there). On CUDA the model runs channels-last under bfloat16 autocast."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    model.to(dev).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    xt = _uint8_nchw(x).to(dev)
    yt = torch.from_numpy(np.asarray(y, np.int64)).to(dev)
    n = len(xt)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    warm = int(recipe.warmup_epochs * steps_per_epoch)
    if recipe.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                              weight_decay=recipe.weight_decay)

    def lr_at(step):
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    t0 = time.perf_counter()
    step, loss_v = 0, float("nan")
    bar = tqdm(total=total, desc=f"train {type(model).__name__}", disable=not progress, unit="step", leave=False)
    for epoch in range(recipe.epochs):
        perm = torch.randperm(n, generator=g).to(dev)
        for i in range(steps_per_epoch):
            idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            xb = xt[idx].float().div_(255.0)
            if recipe.augment:
                xb = _augment(xb, g) if not cuda else _augment(xb.cpu(), g).to(dev)
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model(xb), yt[idx], label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                loss_v = float(loss.detach())
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_v:.3f}")
            bar.update(1)
    bar.close()
    if cuda:
        torch.cuda.synchronize()
        model = model.to(memory_format=torch.contiguous_format)
    model.eval()
    return {"train_seconds": time.perf_counter() - t0, "final_loss": loss_v, "steps": step}


def load_or_train(arch: str, recipe: Recipe, train_set, seed: int, cache: Path, device="cpu",
                  progress=True) -> tuple[Classifier, dict]:
    """Return the trained classifier for (arch, recipe, data, seed), training it if not cached."""
    in_ch = 1 if train_set.x.ndim == 3 else 3
    ncls = int(train_set.y.max()) + 1
    key = checkpoint_key(arch, recipe, train_set.checksum, seed)
    path = Path(cache) / "models" / f"{arch}-{key}.pt"
    meta_path = path.with_suffix(".json")
    model = build(arch, in_ch, ncls)
    if path.exists() and meta_path.exists():
        data = path.read_bytes()
        meta = json.loads(meta_path.read_text())
        if sha256_bytes(data) == meta.get("sha256"):
            model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
            meta["cached"] = True
            return model.to(device).eval(), meta
        print(f"warning: checkpoint {path} fails its checksum; retraining")
    log = train(model, train_set.x, train_set.y, recipe, seed, device, progress)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    data = buf.getvalue()
    meta = {"arch": arch, "recipe": asdict(recipe), "data_checksum": train_set.checksum, "seed": seed,
            "key": key, "sha256": sha256_bytes(data), "device": str(device), **log}
    atomic_write(path, data)
    write_json(meta_path, meta)
    meta["cached"] = False
    return model.to(device).eval(), meta
