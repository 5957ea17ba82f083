"""Classifier architectures.

Every architecture takes float images in [0, 1] of shape (N, C, H, W) and normalises them inside
(so detectors that perturb inputs, like ODIN, work in pixel space), and offers the same contract:

* ``forward(x)`` → logits; ``forward_features(x)`` → (logits, penultimate features);
* ``feature_maps(x)`` → the 4-D activations that the head pools (``head(maps)`` → logits);
* ``fc``: the final ``nn.Linear``; ``tap_layers``: default layer names for per-layer statistics.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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


class OpenOODLeNet(Classifier):
    """OpenOOD v1.5's MNIST classifier (``openood/networks/lenet.py``: LeNet-5, conv 6-16-120, fc 84),
    written here from its source: OpenOOD feeds MNIST as RGB (``Convert('RGB')``, three equal channels)
    normalised with mean = std = 0.5 (no ``mnist`` entry in its normalisation table), so a grey input
    is replicated to three channels first. Penultimate features are the 84 ReLU outputs of
    ``classifier1`` (OpenOOD's ``return_feature``), seen as (N, 84, 1, 1) maps by activation-shaping
    detectors, as OpenOOD's ``forward_threshold`` clips them."""

    tap_layers = ("block1", "block2", "block3", "classifier1", "fc")

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.in_channels = in_channels
        self.norm = Normalize([0.5] * 3, [0.5] * 3)
        self.block1 = nn.Sequential(nn.Conv2d(3, 6, 5, 1, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(6, 16, 5, 1), nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(16, 120, 5, 1), nn.ReLU())
        self.classifier1 = nn.Linear(120, 84)
        self.fc = nn.Linear(84, num_classes)

    def feature_maps(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.block3(self.block2(self.block1(self.norm(x))))
        return F.relu(self.classifier1(torch.flatten(x, 1)))[:, :, None, None]


class AirbenchBatchNorm(nn.BatchNorm2d):
    """Batch normalisation as airbench94 uses it (``BatchNorm`` in legacy/airbench94.py of
    github.com/KellerJordan/cifar10-airbench): the scale is frozen at 1 and only the shift is trained;
    eps is 1e-12. airbench's ``momentum=0.6`` means running = 0.6 * running + 0.4 * batch statistic,
    i.e. PyTorch's ``momentum=0.4`` (PyTorch weighs the new batch by ``momentum``)."""

    def __init__(self, channels, momentum=0.6, eps=1e-12):
        super().__init__(channels, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad_(False)


def _identity_conv3x3(cin, cout):
    """A 3×3 convolution without bias, "same" padding, default (Kaiming-uniform) weights, whose first
    ``cin`` filters are then set to pass their input channel through unchanged (Dirac): airbench's
    partial identity initialisation (``Conv.reset_parameters`` in airbench94.py)."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:cin])
    return conv


class AirbenchGroup(nn.Module):
    """One of airbench94's three conv groups (``ConvGroup``): conv3×3 → max-pool 2 → BN → GELU →
    conv3×3 → BN → GELU; the spatial size halves (rounding down)."""

    def __init__(self, cin, cout, bn_momentum=0.6):
        super().__init__()
        self.conv1 = _identity_conv3x3(cin, cout)
        self.norm1 = AirbenchBatchNorm(cout, bn_momentum)
        self.conv2 = _identity_conv3x3(cout, cout)
        self.norm2 = AirbenchBatchNorm(cout, bn_momentum)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class AirbenchNet(Classifier):
    """The network of airbench94 (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
    arXiv 2404.00498; ``make_net`` in legacy/airbench94.py of github.com/KellerJordan/cifar10-airbench),
    written here from that description, for 32×32 RGB on CPU. Train it with
    :func:`oodbench.benchmark.models.airbench.train`: it sets the whitening layer from the training images.

    * ``whiten``: a 2×2 convolution without padding (32×32 → 31×31) whose weights are fixed, never
      trained: the eigenvectors of the covariance of 2×2 training patches, each divided by the square
      root of its eigenvalue, and their negatives (so the GELU after it keeps both signs):
      2 · 3 · 2 · 2 = 24 channels. Its bias is trained for the first epochs only (the recipe's
      ``whiten_bias_epochs``), as airbench94 does. GELU follows.
    * ``block1``..``block3``: :class:`AirbenchGroup` of ``widths`` channels (airbench94: 64, 256, 256),
      31×31 → 15 → 7 → 3×3. ``feature_maps`` returns ``block3``'s output, (N, widths[-1], 3, 3).
    * ``pool``: global max over the 3×3 positions (airbench94's ``MaxPool2d(3)``) times ``scale``:
      the penultimate features (N, widths[-1]).
    * ``fc``: linear head. airbench94's head has no bias and its logits are multiplied by 1/9; here the
      1/9 is applied to the pooled features instead (the same function and the same gradients, since
      W·(z/9) = (W·z)/9), so that ``fc(pool(maps))`` are the logits, as detectors that read ``fc``
      assume; ``fc`` keeps a bias (detectors read ``fc.bias``) that is frozen at zero.

    No test-time augmentation: ``forward`` is one plain pass (airbench94 reports its 94 % with flip
    and translate test-time augmentation, which detectors must not see)."""

    tap_layers = ("block1", "block2", "block3", "fc")

    def __init__(self, num_classes=10, in_channels=3, widths=(64, 256, 256), bn_momentum=0.6, scale=1 / 9):
        super().__init__()
        self.norm = Normalize([0.4914, 0.4822, 0.4465][:in_channels], [0.2470, 0.2435, 0.2616][:in_channels])
        self.whiten = nn.Conv2d(in_channels, 2 * in_channels * 2 * 2, 2, bias=True)
        self.whiten.weight.requires_grad_(False)
        with torch.no_grad():
            self.whiten.bias.zero_()
        c = [self.whiten.out_channels, *widths]
        self.block1 = AirbenchGroup(c[0], c[1], bn_momentum)
        self.block2 = AirbenchGroup(c[1], c[2], bn_momentum)
        self.block3 = AirbenchGroup(c[2], c[3], bn_momentum)
        self.scale = float(scale)
        self.fc = nn.Linear(c[3], num_classes)
        self.fc.bias.requires_grad_(False)
        with torch.no_grad():
            self.fc.bias.zero_()

    def feature_maps(self, x):
        x = F.gelu(self.whiten(self.norm(x)))
        return self.block3(self.block2(self.block1(x)))

    def pool(self, maps):
        return maps.amax(dim=(2, 3)) * self.scale


class AirbenchWideNet(AirbenchNet):
    """:class:`AirbenchNet` with airbench95's widths, 128, 384 and 384 (legacy/airbench95.py ``hyp``): about
    2.2 times the arithmetic of the 64/256/256 network per image, 384-d penultimate features and 384×3×3
    feature maps. Trained by :func:`oodbench.benchmark.models.airbench.train` as :class:`AirbenchNet`."""

    def __init__(self, num_classes=10, in_channels=3, widths=(128, 384, 384), bn_momentum=0.6, scale=1 / 9):
        super().__init__(num_classes, in_channels, widths, bn_momentum, scale)


ARCHITECTURES = {"lenet": LeNet, "smallcnn": SmallCNN, "resnet18": ResNet18, "lenet5_openood": OpenOODLeNet,
                 "airbench": AirbenchNet, "airbench_wide": AirbenchWideNet}


def build(arch: str, in_channels: int, num_classes: int = 10) -> Classifier:
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels)
