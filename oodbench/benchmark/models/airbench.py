"""Training :class:`~oodbench.benchmark.models.architectures.AirbenchNet` with an
:class:`~oodbench.benchmark.models.recipes.AirbenchRecipe`: the fast CIFAR-10 recipe of airbench94
(Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv 2404.00498; its code is
legacy/airbench94.py in github.com/KellerJordan/cifar10-airbench), written here from that description
for float32 training on CPU (channels-last). What it does, in order:

1. set the whitening layer from the covariance of 2×2 patches of 5000 random training images
   (:func:`whitening_weights`);
2. train with Nesterov SGD in airbench's decoupled parametrisation (:func:`sgd_groups`), the loss
   summed over the batch with label smoothing, a linear warm-up then linear decay of the learning rate
   (:func:`lr_factor`), alternating flips and random 2-pixel translations (:func:`augment`);
3. every few steps pull the weights to a moving average of themselves (:class:`Lookahead`); the
   trained model is that average.

Reproducible as :mod:`.training`: :func:`train_new` builds and trains under
:func:`~.training.reproducible` (global RNG seeded before the build, fixed threads, deterministic
algorithms); the data order and the augmentation draw from a ``torch.Generator`` seeded with the seed,
so one CPU kind gives the same checkpoint bytes for the same (recipe, data, seed, code).
:func:`oodbench.benchmark.models.checkpoints.load_or_train` sends the ``airbench`` architecture here
and puts this module's source into its checkpoint key.

Differences from airbench94: float32 on CPU instead of float16 on a GPU; the whitening images are a
random draw (airbench94 takes the first 5000 of its shuffled set; ours may be sorted by class) and
their covariance is accumulated in float64; the moving average starts after the whitening layer is
set (airbench94 starts it before, which blends a trace of the random initial whitening weights into
them) and is updated at the last step even when that step is not a multiple of ``lookahead_every``
(airbench94 then drops the last few steps); no test-time augmentation (the model is evaluated as
detectors see it)."""
from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from oodbench.benchmark.models.architectures import ARCHITECTURES, AirbenchNet
from oodbench.benchmark.models.recipes import AirbenchRecipe
from oodbench.benchmark.models.training import reproducible

#: ``on_epoch(epoch, train_seconds, model)``: called after each epoch with the number of epochs done,
#: the training seconds so far (whitening set-up included, evaluation excluded) and a copy of the
#: network as training would return it if it stopped now (the moving-average weights, eval mode)
EpochHook = Callable[[int, float, AirbenchNet], None]


def train_new(arch: str, in_channels: int, num_classes: int, recipe: AirbenchRecipe, x: np.ndarray,
              y: np.ndarray, seed: int, device="cpu", progress=True, widths: tuple | None = None,
              on_epoch: EpochHook | None = None) -> tuple[AirbenchNet, dict]:
    """Build ``arch`` (``widths`` overrides the network's default channel widths) and train it from
    scratch under :func:`~.training.reproducible`; returns the model (eval mode) and the training log.
    Same signature as :func:`.training.train_new` plus ``widths`` and ``on_epoch`` (:data:`EpochHook`)."""
    with reproducible(seed, recipe.threads, device) as how:
        kw = {} if widths is None else {"widths": tuple(widths)}
        model = ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, **kw)
        log = train(model, x, y, recipe, seed, device, progress, on_epoch)
    return model, {**log, **how}


def _nchw(x: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W, C) as a uint8 tensor (N, C, H, W)."""
    return torch.from_numpy(np.array(x, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()


def whitening_weights(images: torch.Tensor, eps: float = 5e-4, kernel: int = 2, chunk: int = 500) -> torch.Tensor:
    """Weights of airbench94's whitening convolution (``init_whitening_conv`` in airbench94.py) from
    normalised float images (N, C, H, W): the eigenvectors of the (uncentred) second-moment matrix of all
    ``kernel``×``kernel`` patches, largest eigenvalue first, each divided by sqrt(eigenvalue + eps), then
    the same filters negated: (2·C·k², C, k, k). Accumulated in float64, ``chunk`` images at a time."""
    c = images.shape[1]
    d = c * kernel * kernel
    second = torch.zeros(d, d, dtype=torch.float64)
    count = 0
    for i in range(0, len(images), chunk):
        # F.unfold orders a patch's values (channel, row, column), as a conv weight is laid out
        p = F.unfold(images[i:i + chunk].float(), kernel).transpose(1, 2).reshape(-1, d).double()
        second += p.T @ p
        count += len(p)
    evals, evecs = torch.linalg.eigh(second / count)  # ascending eigenvalues; eigenvectors in columns
    evals, evecs = evals.flip(0), evecs.flip(1)
    w = (evecs.T / torch.sqrt(evals + eps)[:, None]).reshape(d, c, kernel, kernel)
    return torch.cat([w, -w]).float()


def sgd_groups(model: nn.Module, recipe: AirbenchRecipe, batch_size: int) -> list[dict]:
    """Parameter groups of ``torch.optim.SGD`` for airbench's decoupled hyperparameters (airbench94.py
    ``main``): with Nesterov momentum m a constant gradient gives steps 1 + 1/(1-m) times the gradient, so
    the PyTorch learning rate is ``recipe.lr / (1024 · (1 + 1/(1-m)))`` (the loss being summed over the
    batch, ``recipe.lr`` is the step per 1024 examples); the weight decay per step is
    ``recipe.weight_decay · batch_size / (1024 · (1 + 1/(1-m)))`` of the weights, passed to PyTorch
    divided by each group's learning rate so that it does not grow with ``bias_scaler``. The
    BatchNorm shifts (their scales are frozen) get ``bias_scaler`` times the learning rate."""
    kilostep = 1024 * (1 + 1 / (1 - recipe.momentum))
    lr = recipe.lr / kilostep
    wd = recipe.weight_decay * batch_size / kilostep
    lr_bias = lr * recipe.bias_scaler
    bn = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters() if p.requires_grad]
    bn_ids = {id(p) for p in bn}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in bn_ids]
    return [{"params": bn, "lr": lr_bias, "weight_decay": wd / lr_bias},
            {"params": other, "lr": lr, "weight_decay": wd / lr}]


def lr_factor(step: int, total: int, recipe: AirbenchRecipe) -> float:
    """Learning-rate multiplier at ``step`` of ``total`` (airbench94.py ``get_lr``): linear from
    ``lr_start`` to 1 over the first ``lr_peak`` of the steps, then linear to ``lr_end`` at ``total``."""
    warm = int(total * recipe.lr_peak)
    if step < warm:
        f = step / warm
        return recipe.lr_start * (1 - f) + f
    f = (step - warm) / max(1, total - warm)
    return (1 - f) + recipe.lr_end * f


class Lookahead:
    """airbench94's Lookahead (``LookaheadState``): a copy of the floating-point state (weights, biases,
    BatchNorm running statistics); :meth:`update` moves the copy towards the network by ``1 - decay``
    and then sets the network to the copy. airbench94 updates every 5 steps with
    decay = 0.95⁵ · (step / total)³ (no averaging early on, about a 0.95-per-step average at the end),
    and ends with decay 1: the trained network is the average."""

    def __init__(self, model: nn.Module):
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @staticmethod
    def decay(step: int, total: int) -> float:
        return 0.95 ** 5 * (step / total) ** 3

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for k, v in model.state_dict().items():
            if k in self.avg:
                self.avg[k].lerp_(v, 1 - decay)
                v.copy_(self.avg[k])

    @torch.no_grad()
    def averaged_copy(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` in eval mode holding the averaged state, i.e. the network that the final
        ``update(model, 1.0)`` would leave; ``model`` itself is untouched."""
        out = copy.deepcopy(model)
        for k, v in out.state_dict().items():
            if k in self.avg:
                v.copy_(self.avg[k])
        return out.eval()


def augment(xb: torch.Tensor, flip: torch.Tensor, shifts: torch.Tensor, r: int) -> torch.Tensor:
    """Flip the images where ``flip`` (bool, (N,)) and translate each by ``shifts`` (N, 2) in [0, 2r]
    (row, column offsets into the image padded by ``r`` pixels with reflection, airbench94.py
    ``batch_crop``). Returns a channels-last tensor of the input's shape."""
    xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
    if r == 0:
        return xb.contiguous(memory_format=torch.channels_last)
    n, _, h, w = xb.shape
    padded = F.pad(xb, (r, r, r, r), mode="reflect")
    rows = shifts[:, 0, None] + torch.arange(h)  # (N, H)
    cols = shifts[:, 1, None] + torch.arange(w)  # (N, W)
    out = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)  # (N, C, H, W) with channels-last strides


def _autocast(dev: torch.device, dtype: str | None):
    """The training step's forward context: ``torch.autocast`` in ``dtype`` ("bfloat16"), or nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=getattr(torch, dtype))


def train(model: AirbenchNet, x: np.ndarray, y: np.ndarray, recipe: AirbenchRecipe, seed: int, device="cpu",
          progress=True, on_epoch: EpochHook | None = None) -> dict:
    """Train ``model`` on uint8 images (N, H, W, 3) with labels ``y``; returns a log (seconds, steps,
    last batch's mean loss, whitening set-up seconds). ``on_epoch`` (:data:`EpochHook`) sees a copy of
    the model and runs outside the timed training; it draws no random numbers from the training's
    generator, so the trained weights are the same with or without it."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    xt = _nchw(x)
    yt = torch.from_numpy(np.asarray(y, np.int64))
    n = len(xt)
    bs = min(recipe.batch_size, n)
    steps_per_epoch = n // bs  # airbench94 drops the last partial batch of an epoch
    total = math.ceil(steps_per_epoch * recipe.epochs)
    model.to(dev).train()
    model.to(memory_format=torch.channels_last)

    t0 = time.perf_counter()
    # airbench94 takes the first 5000 images of CIFAR-10's (shuffled) training set; ours may be stored
    # sorted by class, so a random 5000 of them, drawn first from the training generator
    pick = torch.randperm(n, generator=g)[:recipe.whiten_images].sort().values
    with torch.no_grad():
        some = model.norm(xt[pick].float().div_(255.0).to(dev)).cpu()
        model.whiten.weight.copy_(whitening_weights(some, recipe.whiten_eps, model.whiten.kernel_size[0]))
    del some
    lookahead = Lookahead(model)
    opt = torch.optim.SGD(sgd_groups(model, recipe, bs), momentum=recipe.momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, recipe))
    init_seconds = seconds = time.perf_counter() - t0

    r = recipe.translate if recipe.augment else 0
    base_flip = torch.rand(n, generator=g) < 0.5 if recipe.augment else torch.zeros(n, dtype=torch.bool)
    step, loss_v = 0, float("nan")
    bar = tqdm(total=total, desc="train AirbenchNet", disable=not progress, unit="step", leave=False)
    for epoch in range(math.ceil(recipe.epochs)):
        t0 = time.perf_counter()
        model.whiten.bias.requires_grad_(epoch < recipe.whiten_bias_epochs)
        perm = torch.randperm(n, generator=g)
        shifts = torch.randint(0, 2 * r + 1, (n, 2), generator=g)
        # airbench94's alternating flip: each image keeps its random flip on even epochs and the
        # opposite on odd ones, so over two epochs every image is seen both ways
        flip = base_flip ^ bool(recipe.augment and epoch % 2 == 1)
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[i * bs:(i + 1) * bs]
            xb = augment(xt[idx].float().div_(255.0), flip[idx], shifts[idx], r).to(dev)
            with _autocast(dev, recipe.autocast):
                loss = F.cross_entropy(model(xb), yt[idx].to(dev), label_smoothing=recipe.label_smoothing,
                                       reduction="sum")
            opt.zero_grad(set_to_none=True)  # a frozen whitening bias then has no gradient: SGD skips it
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % recipe.lookahead_every == 0 or step == total:
                lookahead.update(model, Lookahead.decay(step, total))
            if step % 10 == 0 or step == total:
                loss_v = float(loss.detach()) / len(idx)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_v:.3f}")
            bar.update(1)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        if on_epoch is not None:
            on_epoch(epoch + 1, seconds, lookahead.averaged_copy(model))
    bar.close()
    lookahead.update(model, 1.0)  # the trained network is the average (airbench94: decay=1.0 at the end)
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return {"train_seconds": seconds, "init_seconds": init_seconds, "final_loss": loss_v, "steps": step}
