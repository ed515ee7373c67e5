"""DenseNet-121 (Huang et al., *Densely Connected Convolutional Networks*, CVPR 2017), as torchvision
``models.densenet.densenet121`` defines it: 7×7/2 conv (64) → BN → ReLU → 3×3/2 max-pool; dense blocks
of [6, 12, 24, 16] pre-activation layers (BN → ReLU → 1×1 conv to 4·k → BN → ReLU → 3×3 conv to k,
growth k = 32) on the Concat of all earlier outputs; transitions BN → ReLU → 1×1 conv (halving) → 2×2/2
average pool; final BN → ReLU → ``adaptive_avg_pool2d(1)`` → flatten → Linear. The BNs follow a Concat,
not a conv, so they cannot be folded into a preceding conv.

Deviation: ``width_mult`` scales the growth rate (and the stem, 2·k), for the small variants."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, bn_size: int) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(cin + i * growth, growth, bn_size) for i in range(layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16), bn_size: int = 4,
                 num_classes: int = 1000) -> None:
        super().__init__()
        c = 2 * growth
        feats: dict[str, nn.Module] = {"conv0": nn.Conv2d(3, c, 7, 2, 3, bias=False), "norm0": nn.BatchNorm2d(c),
                                       "relu0": nn.ReLU(inplace=True), "pool0": nn.MaxPool2d(3, 2, 1)}
        for i, count in enumerate(blocks):
            feats[f"denseblock{i + 1}"] = DenseBlock(count, c, growth, bn_size)
            c += count * growth
            if i != len(blocks) - 1:
                feats[f"transition{i + 1}"] = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                                            nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2))
                c //= 2
        feats["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential()
        for name, module in feats.items():
            self.features.add_module(name, module)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(F.relu(self.features(x), inplace=True), (1, 1))
        return self.classifier(torch.flatten(out, 1))


def densenet121(width_mult: float = 1.0, num_classes: int = 1000) -> DenseNet:
    """torchvision ``densenet121``: 8.0 M parameters at width 1 (growth 32)."""
    return DenseNet(max(2, round(32 * width_mult)), (6, 12, 24, 16), 4, num_classes)
