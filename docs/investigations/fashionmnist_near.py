"""Why DICE, GradNorm and SHE rank MNIST (near-OOD of the fashionmnist suite) as *more* in-distribution
than FashionMNIST test images on LeNet.

For one fashionmnist classifier seed: per detector, the near-OOD AUROC (MNIST, notMNIST) with the
baselines fitted on the training split (the default protocol); then per set the statistics these
scores are built from: the L1 norm of the penultimate features (GradNorm's score is proportional to
it times the KL-gradient norm; DICE's and SHE's to weighted feature sums), the share of zero
features, and the mean maximum softmax probability.

    python docs/investigations/fashionmnist_near.py --cache-dir ~/.cache/oodbench --seed 0

Findings are in ``docs/investigations/fashionmnist_near.md``.
"""
import argparse

import numpy as np
import torch

from oodbench.benchmark.evaluation.metrics import auroc
from oodbench.benchmark.evaluation.scoring import fit_and_score
from oodbench.benchmark.evaluation.session import Session

DETECTORS = ("pytorch_ood.msp", "pytorch_ood.energy", "pytorch_ood.dice", "pytorch_ood.gradnorm", "pytorch_ood.she")


def main(cache_dir, seed, fit_split):
    torch.set_num_threads(1)
    s = Session("fashionmnist", seed, "cpu", cache_dir)
    near = [t for t in s.data.tests if t.group == "near"]
    print(f"classifier sha {s.model_meta['sha256'][:12]}; fit split {fit_split}")
    print("near-OOD AUROC (%):")
    for name in DETECTORS:
        out = fit_and_score(s, name, fit_split=fit_split)
        print(f"  {name:22s}", "  ".join(f"{t.name} {100 * auroc(out.scores['id'], out.scores[t.name]):5.1f}"
                                         for t in near))
    print("per set: mean L1 norm of the penultimate features, share of zero features, mean MSP")
    for name, images in [("id_test", s.data.id_test)] + [(t.name, t.images) for t in near]:
        rep = s.representation(images, name)
        f = rep.features
        msp = torch.softmax(torch.as_tensor(rep.logits), 1).max(1).values.numpy()
        print(f"  {name:14s} L1 {np.abs(f).sum(1).mean():8.1f}  zeros {np.mean(f == 0):.3f}  MSP {msp.mean():.3f}")
    l1_id = np.abs(s.representation(s.data.id_test, "id").features).sum(1)
    print("AUROC (%) of the feature L1 norm alone, as the magnitude-based scores read it (small norm = OOD):")
    for t in near:
        l1 = np.abs(s.representation(t.images, t.name).features).sum(1)
        print(f"  {t.name:14s} {100 * auroc(-l1_id, -l1):5.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-split", default="train", choices=["train", "fit"])
    a = ap.parse_args()
    main(a.cache_dir, a.seed, a.fit_split)
