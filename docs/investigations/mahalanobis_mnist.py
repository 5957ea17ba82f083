"""Why Mahalanobis (pytorch-ood ``Mahalanobis``, OpenOOD ``mds``) is below chance on mnist's far-OOD and
covariate sets on LeNet, and whether LeNet's dead fc1 units explain it.

For one mnist classifier seed: the fc1 units that are 0 on every training image ("dead"), the share
of each set's images that activate one of them, each set's mean L1 feature norm with the AUROC of
the norm alone (small norm = OOD), and Mahalanobis's AUROC (fitted on the ``fit`` split, as the
three-seed run at commit 3c9924d).

    python docs/investigations/mahalanobis_mnist.py --cache-dir ~/.cache/oodbench --seed 0
"""
import argparse

import numpy as np
import torch

from oodbench.benchmark.evaluation.metrics import auroc
from oodbench.benchmark.evaluation.scoring import fit_and_score
from oodbench.benchmark.evaluation.session import Session


def main(cache_dir, seed, fit_split):
    torch.set_num_threads(1)
    s = Session("mnist", seed, "cpu", cache_dir)
    dead = (s.representation(s.data.train, "train").features == 0).all(0)
    print(f"classifier sha {s.model_meta['sha256'][:12]}: {int(dead.sum())} of {len(dead)} fc1 units dead on train")
    out = fit_and_score(s, "pytorch_ood.mahalanobis", fit_split=fit_split)
    l1_id = np.abs(s.representation(s.data.id_test, "id").features).sum(1)
    print(f"{'set':18s} {'group':9s} {'dead active':>11s} {'L1':>6s} {'AUROC(-L1)':>10s} {'Maha AUROC':>10s}")
    for name, group, images in [("id_test", "id", s.data.id_test)] + [(t.name, t.group, t.images)
                                                                      for t in s.data.tests]:
        f = s.representation(images, name).features
        l1 = np.abs(f).sum(1)
        act = float((f[:, dead] > 0).any(1).mean())
        a_l1 = "" if name == "id_test" else f"{100 * auroc(-l1_id, -l1):10.1f}"
        a_m = "" if name == "id_test" else f"{100 * auroc(out.scores['id'], out.scores[name]):10.1f}"
        print(f"{name:18s} {group:9s} {act:11.3f} {l1.mean():6.1f} {a_l1:>10s} {a_m:>10s}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-split", default="fit", choices=["train", "fit"])
    a = ap.parse_args()
    main(a.cache_dir, a.seed, a.fit_split)
