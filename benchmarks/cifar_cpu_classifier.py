"""Accuracy against training time of the ``airbench`` CPU classifiers on the cifar10 suite.

Trains the ``airbench`` recipe (:mod:`oodbench.benchmark.models.airbench`, after airbench94), or with
``--arch airbench_wide`` the wider network and its recipe (after airbench95, bfloat16 autocast), on the
cifar10 suite's ``train`` split (40,000 images), loaded through the harness's data code as a run
loads it, and after each epoch prints the ID test accuracy (the 10,000 CIFAR-10 test images, no
test-time augmentation, the moving-average weights the trained model ends with) and the cumulative
training seconds (whitening set-up included, evaluation excluded). Evaluating does not change the
training: the final weights are those a run trains (and caches) for the same seed. Nothing is cached
except the decoded CIFAR-10 training images (under the cache folder, as a run does).

Usage: python benchmarks/cifar_cpu_classifier.py --seed 0 [--arch airbench_wide] [--epochs 10] [--subset N]
       [--width 64,128,128] [--lr 10] [--autocast bfloat16] [--eval-from 8] [--threads 2] [--data-dir DIR]
       [--cache-dir DIR]
``--subset N`` trains on N training images and evaluates on N test images, a fixed random draw of
each (smoke runs); ``--width`` sets the three conv groups' widths (default the architecture's: 64,256,256
for ``airbench``, 128,384,384 for ``airbench_wide``); ``--lr`` and ``--autocast`` override the recipe's;
``--eval-from k`` evaluates after epoch k and later only (evaluation takes 25-40 s an epoch on the wide net);
``--threads`` other than the recipe's 2 gives other weights (float sums split differently).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from oodbench.benchmark import config
from oodbench.benchmark.data import datasets, suites
from oodbench.benchmark.models import airbench, recipe_for


def cifar10_sets(data_dir=None, cache_dir=None):
    """The cifar10 suite's ``train`` split and ID test set, as :func:`suites.materialise` makes them
    (without loading the suite's OOD sets)."""
    suite = suites.get("cifar10")
    cache = config.cache_dir(cache_dir)
    full = datasets.load(suite["id"], "train", data_dir, cache)
    train = full.subset(suites.split_indices(len(full), suite["splits"])["train"], f"{suite['id']}:train")
    return train, datasets.load(suite["id"], "test", data_dir, cache)


@torch.no_grad()
def accuracy(model, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on uint8 images (N, H, W, 3): one plain forward pass per image."""
    hits = 0
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch]).permute(0, 3, 1, 2).float().div_(255.0)
        hits += int((model(xb.contiguous(memory_format=torch.channels_last)).argmax(1).numpy()
                     == y[i:i + batch]).sum())
    return hits / len(x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", default="airbench", choices=["airbench", "airbench_wide"],
                   help="network and recipe (default airbench)")
    p.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs (may be fractional)")
    p.add_argument("--subset", type=int, default=None, help="N random training and N random test images")
    p.add_argument("--width", default=None, help="conv group widths, e.g. 64,128,128")
    p.add_argument("--lr", type=float, default=None, help="override the recipe's lr (per 1024 examples)")
    p.add_argument("--autocast", default=None, choices=["bfloat16"], help="train the forward pass in bfloat16")
    p.add_argument("--threads", type=int, default=None, help="training threads (default: the recipe's)")
    p.add_argument("--eval-from", type=int, default=1, help="test accuracy after each epoch from this one on")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args(argv)

    recipe = recipe_for(a.arch)
    if a.epochs is not None:
        recipe = replace(recipe, epochs=int(a.epochs) if float(a.epochs).is_integer() else a.epochs)
    if a.threads is not None:
        recipe = replace(recipe, threads=a.threads)
    if a.lr is not None:
        recipe = replace(recipe, lr=a.lr)
    if a.autocast is not None:
        recipe = replace(recipe, autocast=a.autocast)
    widths = tuple(int(w) for w in a.width.split(",")) if a.width else None
    t0 = time.perf_counter()
    train, test = cifar10_sets(a.data_dir, a.cache_dir)
    xtr, ytr, xte, yte = train.x, train.y, test.x, test.y
    if a.subset:  # the stored sets are sorted by class: a fixed random subset, not the first N
        rng = np.random.default_rng(0)
        tr = np.sort(rng.choice(len(xtr), min(a.subset, len(xtr)), replace=False))
        te = np.sort(rng.choice(len(xte), min(a.subset, len(xte)), replace=False))
        xtr, ytr, xte, yte = xtr[tr], ytr[tr], xte[te], yte[te]
    print(f"data: {len(xtr)} training images, {len(xte)} test images (loaded in {time.perf_counter() - t0:.1f} s)")
    print(f"recipe: {recipe}")
    print(f"widths: {widths or 'default'}; torch {torch.__version__}, {recipe.threads} training threads")
    print(f"{'epoch':>6} {'train_s':>9} {'test_acc':>9} {'eval_s':>7}")

    def on_epoch(epoch, seconds, model):
        if epoch < a.eval_from:
            print(f"{epoch:>6} {seconds:>9.1f}", flush=True)
            return
        t = time.perf_counter()
        acc = accuracy(model, xte, yte)
        print(f"{epoch:>6} {seconds:>9.1f} {acc:>9.4f} {time.perf_counter() - t:>7.1f}", flush=True)

    model, log = airbench.train_new(a.arch, 3, len(train.classes), recipe, xtr, ytr, a.seed, progress=False,
                                    widths=widths, on_epoch=on_epoch)
    with torch.no_grad():
        torch.set_num_threads(recipe.threads)
        acc = accuracy(model, xte, yte)
    print(f"final: test accuracy {acc:.4f} after {log['steps']} steps, {log['train_seconds']:.1f} s training "
          f"({log['init_seconds']:.1f} s whitening set-up), last batch loss {log['final_loss']:.3f}")


if __name__ == "__main__":
    main()
