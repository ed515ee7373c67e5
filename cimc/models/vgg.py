"""CIFAR-10 VGG networks (VGG9 and VGG16) for the model zoo.

Both use 3x3 convolutions with padding 1 and no bias, each followed by
BatchNorm2d and ReLU, with 2x2 max-pools between groups.  The classifier is a
single ``Linear(512, 10)``.
"""

from __future__ import annotations

import torch
from torch import nn

#: A layer plan: an ``int`` is a conv with that many output channels, ``"M"`` a 2x2 max-pool.
LayerPlan = list[int | str]

VGG9_PLAN: LayerPlan = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]
VGG16_PLAN: LayerPlan = [
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, "M",
    512, 512, 512, "M",
    512, 512, 512, "M",
]  # fmt: skip


def conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Return a bias-free 3x3 conv (pad 1) followed by BatchNorm2d and ReLU."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


def make_features(plan: LayerPlan, in_ch: int = 3) -> nn.Sequential:
    """Build the convolutional trunk described by ``plan``."""
    layers: list[nn.Module] = []
    channels = in_ch
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(item, int)
            layers.extend(conv_bn_relu(channels, item))
            channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG-style network: conv trunk, optional global average pool, linear head."""

    def __init__(self, plan: LayerPlan, num_classes: int = 10, global_pool: bool = False) -> None:
        super().__init__()
        self.features = make_features(plan)
        self.pool: nn.Module = nn.AdaptiveAvgPool2d(1) if global_pool else nn.Identity()
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of 32x32 RGB images."""
        x = self.pool(self.features(x))
        logits: torch.Tensor = self.classifier(torch.flatten(x, 1))
        return logits


def vgg9(num_classes: int = 10) -> VGG:
    """CIFAR VGG9: 8 convs (9,217,728 weights), pools after convs 1, 2, 4, 6, then GAP."""
    return VGG(VGG9_PLAN, num_classes=num_classes, global_pool=True)


def vgg16(num_classes: int = 10) -> VGG:
    """CIFAR VGG16: 13 convs (14,710,464 weights), 5 pools down to 1x1."""
    return VGG(VGG16_PLAN, num_classes=num_classes, global_pool=False)
