"""The one module-state hash (``oodbench.detectors.state``) that names networks in cache keys."""
import hashlib

import torch
from torch import nn

from oodbench.detectors.state import state_hash


def _numpy_hash(module):
    """The hash user models and tuned inverters were keyed by before it was shared (float32 state)."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_state_hash_keeps_the_cache_keys_of_float32_networks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 8, 8))
    assert state_hash(net) == _numpy_hash(net)


def test_state_hash_follows_the_weights_not_the_object():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert state_hash(a) == state_hash(b)
    with torch.no_grad():
        b.weight[0, 0] += 1e-6
    assert state_hash(a) != state_hash(b)


def test_state_hash_reads_dtypes_numpy_lacks():
    net = nn.Linear(3, 2).to(torch.bfloat16)
    other = nn.Linear(3, 2).to(torch.bfloat16)
    assert len(state_hash(net)) == 64
    assert state_hash(net) != state_hash(other)
