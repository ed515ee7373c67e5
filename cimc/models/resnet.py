"""CIFAR ResNet18 variant with parameter-free shortcuts.

A 3x3 stem at 32x32 is followed by a 2x2 max-pool, then four stages of two
BasicBlocks at 16, 8, 4 and 2 pixels square.  Downsampling shortcuts subsample
with a 1x1 stride-2 max-pool and zero-pad the channels, so the exported graph
uses MaxPool and Pad rather than Slice and has exactly 17 convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGE_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """Return a bias-free 3x3 convolution with padding 1."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with a parameter-free shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.stride = stride
        self.extra_channels = out_ch - in_ch

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Identity, or stride-2 subsampling plus zero channel padding."""
        if self.stride != 1:
            x = F.max_pool2d(x, kernel_size=1, stride=self.stride)
        if self.extra_channels > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv-BN-ReLU-conv-BN, add the shortcut, then ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def make_stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Two BasicBlocks; the first one may downsample."""
    return nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1))


class ResNet18(nn.Module):
    """CIFAR ResNet18 with a max-pooled 3x3 stem and parameter-free shortcuts."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            conv3x3(3, STAGE_CHANNELS[0]),
            nn.BatchNorm2d(STAGE_CHANNELS[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        stages: list[nn.Module] = []
        in_ch = STAGE_CHANNELS[0]
        for index, out_ch in enumerate(STAGE_CHANNELS):
            stages.append(make_stage(in_ch, out_ch, 1 if index == 0 else 2))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGE_CHANNELS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of 32x32 RGB images."""
        x = self.pool(self.stages(self.stem(x)))
        logits: torch.Tensor = self.fc(torch.flatten(x, 1))
        return logits


def resnet18(num_classes: int = 10) -> ResNet18:
    """Build the CIFAR ResNet18 variant (17 convs, 10,987,200 conv weights)."""
    return ResNet18(num_classes=num_classes)
