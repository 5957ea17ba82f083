"""Why pytorch-ood's NAC-UE ranks far-OOD inputs as *more* in-distribution than MNIST on LeNet.

Two measurements on one mnist classifier seed (its checkpoint and representations come from the cache
of an ``oodbench run mnist``; nothing is trained if the cache has them):

1. The pre-ReLU hypothesis. LeNet applies ReLU functionally, so NAC-UE's hooks on ``conv1``, ``conv2``
   and ``fc1`` see pre-activation outputs. The same detector is run with hooks that hand NAC-UE the
   post-ReLU outputs instead (a forward hook returning ``relu(out)``; the network is unchanged since
   relu(relu(x)) = relu(x)) and the per-set AUROCs are compared.
2. Where the neuron states land. NAC-UE's state of a neuron is sigmoid(α · z · ∂KL/∂z) (α = 100), binned;
   a sample's ID-likeness is the share of its neurons whose bin was visited by at least ``o_star`` = 50
   fitting samples. Printed per layer: the share of (sample, neuron) states at the centre bin
   (|state − 0.5| < 1e-3, i.e. z · ∂KL/∂z ≈ 0) on 1,000 images of ID test and each far-OOD set, and
   the mean maximum softmax probability; then each layer's mean coverage, at the centre bin and elsewhere.

    python docs/investigations/nacue_far_ood.py --cache-dir ~/.cache/oodbench --seed 0 --fit-split fit

Findings are in ``docs/investigations/nacue_far_ood.md``.
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

from oodbench.adapters import pytorch_ood as P
from oodbench.adapters.common import feature_layers
from oodbench.benchmark.evaluation.metrics import auroc
from oodbench.benchmark.evaluation.scoring import fit_and_score
from oodbench.benchmark.evaluation.session import Session


def per_set_auroc(s, fit_split):
    out = fit_and_score(s, "pytorch_ood.nacue", fit_split=fit_split)
    return {t.name: 100 * auroc(out.scores["id"], out.scores[t.name]) for t in s.data.tests}


def pre_vs_post_relu(s, fit_split):
    pre = per_set_auroc(s, fit_split)
    original = P._NACUE._network_args

    def post(self, rep):
        args = original(self, rep)
        for m in args["layers"]:
            m.register_forward_hook(lambda mod, i, o: F.relu(o))  # runs before NAC-UE's own hooks
        return args

    P._NACUE._network_args = post
    try:
        post_auc = per_set_auroc(s, fit_split)
    finally:
        P._NACUE._network_args = original
        for m in s.model.modules():
            m._forward_hooks.clear()
    print("AUROC (%) per set: pre-ReLU hooks (the adapter) | post-ReLU hooks")
    for k in pre:
        print(f"  {k:20s} {pre[k]:6.1f} | {post_auc[k]:6.1f}")
    print("identical:", all(abs(pre[k] - post_auc[k]) < 1e-9 for k in pre))


def nac_states(s, images, n=1000):
    """NAC-UE's neuron states sigmoid(100 · z · ∂KL/∂z) per feature layer of the first ``n`` images (one
    forward and backward pass), and their mean maximum softmax probability."""
    model = s.model.eval()
    mods = dict(model.named_modules())
    layers = feature_layers(model)
    rep = s.representation(images.subset(np.arange(min(n, len(images)))), "probe")
    x = torch.cat(list(rep.inputs(batch_size=500))).requires_grad_(True)
    cap = []
    hooks = [mods[name].register_forward_hook(lambda mod, i, o: cap.append(o)) for name in layers]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    p = logits.softmax(1)
    grads = torch.autograd.grad((-(p + 1e-12).log().mean(1)).sum(), cap)  # NAC-UE's KL to uniform
    states = {}
    for name, z, g in zip(layers, cap, grads):
        prod = z * g
        prod = prod.mean((2, 3)) if prod.ndim == 4 else prod
        states[name] = torch.sigmoid(100 * prod).detach()
    return states, float(p.detach().max(1).values.mean())


def states_and_coverage(s, fit_split, n=1000):
    """Per set and layer: the share of states at the centre bin, the mean MSP, and the mean coverage
    phi = min(count / o_star, 1) from the fitted detector's own histograms (all states; centre-bin
    states / the others)."""
    from pytorch_ood.detector.nac import _bin_indices_geometric

    from oodbench.adapters import registry
    from oodbench.benchmark.evaluation.scoring import fit_representation

    det = registry.create("pytorch_ood.nacue").fit(fit_representation(s, "pytorch_ood.nacue", fit_split))
    stats = det._det._stats
    print("per layer: share of states at the centre bin; coverage phi (centre-bin states / the others); mean MSP")
    for name, images in [("id_test", s.data.id_test)] + [(t.name, t.images) for t in s.data.tests
                                                          if t.group == "far"]:
        states, msp = nac_states(s, images, n)
        cells = []
        for li, (layer, state) in enumerate(states.items()):
            idx = _bin_indices_geometric(state, stats[li].m)
            phi = (stats[li].counts.gather(1, idx.T).T.float() / stats[li].o_star).clamp(max=1)
            centre = (state - 0.5).abs() < 1e-3
            cells.append(f"{layer} centre {centre.float().mean():.3f} phi {phi.mean():.3f} "
                         f"({phi[centre].mean():.3f} / {phi[~centre].mean():.3f})")
        print(f"  {name:20s}", "  ".join(cells), f"  MSP {msp:.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-split", default="fit", choices=["train", "fit"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    session = Session("mnist", a.seed, "cpu", a.cache_dir)
    pre_vs_post_relu(session, a.fit_split)
    states_and_coverage(session, a.fit_split)
