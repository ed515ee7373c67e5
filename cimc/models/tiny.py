"""Small test networks for fast end-to-end checks of the compiler.

* ``tiny_cnn``: 1x3x8x8 input; its 40-channel 3x3 conv splits into two
  segments of 28 input channels on 256 wordlines.
* ``tiny_residual``: 1x8x8x8 input; exercises a residual Add, a Concat, a
  depthwise conv and a grouped conv.
* ``digits_cnn``: 1x1x8x8 input for sklearn's digits; 3x3 convs with 32 and 64
  input channels, so several segments occur on 256 wordlines.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, groups: int = 1) -> nn.Sequential:
    """Bias-free 3x3 conv (pad 1), BatchNorm2d and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """conv 3->8, conv 8->40, maxpool 2, conv 40->16 (bias), GAP, Linear(16, 10)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(3, 8),
            conv_bn_relu(8, 40),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(40, 16, kernel_size=3, padding=1, bias=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of 3x8x8 inputs."""
        logits: torch.Tensor = self.fc(torch.flatten(self.features(x), 1))
        return logits


class TinyResidual(nn.Module):
    """Stem conv, depthwise conv with residual Add, grouped conv, Concat, GAP, Linear."""

    def __init__(self, channels: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn_relu(channels, channels)
        self.depthwise = conv_bn_relu(channels, channels, groups=channels)
        self.grouped = conv_bn_relu(channels, channels, groups=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of 8x8x8 inputs."""
        a = self.stem(x)
        b = a + self.depthwise(a)
        c = torch.cat([b, self.grouped(b)], dim=1)
        logits: torch.Tensor = self.fc(torch.flatten(self.pool(c), 1))
        return logits


class DigitsCNN(nn.Module):
    """conv 1->32, conv 32->64, maxpool 2, conv 64->64, GAP, Linear(64, 10)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(1, 32),
            conv_bn_relu(32, 64),
            nn.MaxPool2d(kernel_size=2, stride=2),
            conv_bn_relu(64, 64),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of 1x8x8 digit images."""
        logits: torch.Tensor = self.fc(torch.flatten(self.features(x), 1))
        return logits


def tiny_cnn(num_classes: int = 10) -> TinyCNN:
    """Build the tiny 3x8x8 CNN."""
    return TinyCNN(num_classes=num_classes)


def tiny_residual(num_classes: int = 10) -> TinyResidual:
    """Build the tiny residual/concat/depthwise/grouped test net."""
    return TinyResidual(num_classes=num_classes)


def digits_cnn(num_classes: int = 10) -> DigitsCNN:
    """Build the CNN for sklearn's 8x8 digits."""
    return DigitsCNN(num_classes=num_classes)
