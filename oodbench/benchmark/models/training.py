"""Training a classifier on uint8 images with a :class:`~oodbench.benchmark.models.recipes.Recipe`,
reproducibly: :func:`train_new` builds and trains under :func:`reproducible` (the global RNG seeded
*before* the network is built, a fixed thread count, deterministic algorithms), so on one CPU kind the
same (architecture, recipe, data, seed, code) gives the same checkpoint bytes. The data order and the
augmentation draw from a generator seeded with the same seed (there is no DataLoader or worker)."""
from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from oodbench.benchmark.models.architectures import build
from oodbench.benchmark.models.recipes import Recipe


@contextmanager
def reproducible(seed: int, threads: int, device="cpu"):
    """Run the body (building and training a network) reproducibly; yields a dict that records how.

    The global torch RNG is seeded with ``seed`` inside a fork (the caller's RNG state is restored, so
    what runs later does not depend on whether a model was trained or loaded from the cache); torch
    uses ``threads`` intra-op threads and deterministic algorithms; all three are restored after. On
    CUDA, cuDNN is made deterministic and an operation without a deterministic implementation warns
    instead of failing: the record's ``deterministic`` then says whether the run was."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    prev = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    record = {"threads": int(threads), "torch": torch.__version__, "device_kind": dev.type,
              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if cuda:  # cuBLAS is deterministic only with a fixed workspace (read when its handle is created)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with torch.random.fork_rng(devices=[dev.index or 0] if cuda else []), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(int(seed))
        torch.set_num_threads(int(threads))
        torch.use_deterministic_algorithms(True, warn_only=cuda)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield record
        finally:
            torch.set_num_threads(prev[0])
            torch.use_deterministic_algorithms(prev[1], warn_only=prev[2])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[3], prev[4]
    nondet = [w for w in caught if "deterministic" in str(w.message)]
    record["deterministic"] = not nondet and (not cuda or os.environ.get("CUBLAS_WORKSPACE_CONFIG") in
                                              (":4096:8", ":16:8"))
    if nondet:
        record["nondeterministic_ops"] = sorted({str(w.message).split("\n")[0][:200] for w in nondet})
    for w in caught:  # the other warnings, as they would have been shown
        if w not in nondet:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def train_new(arch: str, in_channels: int, num_classes: int, recipe: Recipe, x: np.ndarray, y: np.ndarray,
              seed: int, device="cpu", progress=True) -> tuple[torch.nn.Module, dict]:
    """Build ``arch`` and train it from scratch with ``recipe`` under :func:`reproducible`; returns the
    model (in eval mode) and the training log (with how it was made reproducible)."""
    with reproducible(seed, recipe.threads, device) as how:
        model = build(arch, in_channels, num_classes)
        log = train(model, x, y, recipe, seed, device, progress)
    return model, {**log, **how}


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


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, recipe: Recipe, seed: int, device="cpu",
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
