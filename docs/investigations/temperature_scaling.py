"""Why OpenOOD's temperature scaling inverts its ranking on two of the three cifar10 seeds while
pytorch-ood's does not, although both fit T on the same ``cal`` logits with the same optimiser.

For each seed: the NLL of the cal logits at T = 1; T and NLL after pytorch-ood 0.4.0's own
``TemperatureScaling.fit_logits`` (T starts at 1.0); T and NLL after OpenOOD v1.5's fit, written out
from ``postprocessors/temp_scaling_postprocessor.py`` ``setup`` (T starts at 1.5, then the same
``LBFGS(lr=0.01, max_iter=50)`` on the NLL of logits / T, no line search); and OpenOOD's fit started
from 1.0 instead. Needs the cache of the committed cifar10 run (its checkpoints and representations):

    python docs/investigations/temperature_scaling.py --cache-dir ~/.cache/oodbench
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_ood.detector import TemperatureScaling
from torch.optim import LBFGS

from oodbench.benchmark.evaluation.session import Session


def openood_fit(logits: torch.Tensor, labels: torch.Tensor, t0: float = 1.5) -> float:
    """OpenOOD's temperature fit (its setup(), on the CPU): the fitted T."""
    t = torch.nn.Parameter(torch.ones(1) * t0)
    opt = LBFGS([t], lr=0.01, max_iter=50)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / t, labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(t.detach())


def main(cache_dir, seeds):
    torch.set_num_threads(1)
    print(f"{'seed':>4} {'NLL(T=1)':>8} {'pytorch-ood T':>13} {'NLL':>6} {'OpenOOD T':>10} {'NLL':>6} "
          f"{'OpenOOD from 1.0':>16}")
    for seed in seeds:
        s = Session("cifar10", seed, "cpu", cache_dir)
        rep = s.representation(s.data.cal, "cal")
        lg = torch.from_numpy(np.asarray(rep.logits, np.float32))
        y = torch.from_numpy(np.asarray(rep.labels, np.int64))
        tp = float(TemperatureScaling(None).fit_logits(lg, y).t.detach())
        to, t1 = openood_fit(lg, y), openood_fit(lg, y, 1.0)
        nll = lambda t: float(F.cross_entropy(lg / t, y))  # noqa: E731
        print(f"{seed:>4} {nll(1.0):>8.3f} {tp:>13.3f} {nll(tp):>6.3f} {to:>10.3f} {nll(to):>6.3f} {t1:>16.3f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    main(a.cache_dir, a.seeds)
