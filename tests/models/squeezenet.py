"""SqueezeNet 1.1 (Iandola et al., *SqueezeNet: AlexNet-level accuracy with 50× fewer parameters*,
2016; v1.1 from the authors' repository), as torchvision ``models.squeezenet.squeezenet1_1`` defines
it: 3×3/2 conv (64) → ReLU → 3×3/2 max-pool (ceil mode) → Fire(16, 64, 64) ×2 → max-pool →
Fire(32, 128, 128) ×2 → max-pool → Fire(48, 192, 192) ×2 → Fire(64, 256, 256) ×2 → Dropout → 1×1
conv to the classes → ReLU → AdaptiveAvgPool2d((1, 1)) → flatten. Fire = 1×1 squeeze (ReLU) → Concat
of a 1×1 and a 3×3 expand (ReLU each). No BatchNorm.

Deviation: ``width_mult`` scales every Fire module's channels, for the small variants."""

from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()

        def w(c: int) -> int:
            return max(2, round(c * width_mult))

        def fire(cin: int, s: int, e: int) -> Fire:
            return Fire(2 * w(cin // 2) if cin > 64 else w(cin), w(s), w(e), w(e))

        self.features = nn.Sequential(
            nn.Conv2d(3, w(64), 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(64, 16, 64), fire(128, 16, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(128, 32, 128), fire(256, 32, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            fire(256, 48, 192), fire(384, 48, 192), fire(384, 64, 256), fire(512, 64, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(2 * w(256), num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_1(width_mult: float = 1.0, num_classes: int = 1000) -> SqueezeNet:
    """torchvision ``squeezenet1_1``: 1.2 M parameters at width 1."""
    return SqueezeNet(width_mult, num_classes)
