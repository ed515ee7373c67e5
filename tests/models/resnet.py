"""ResNet-18 and ResNet-50 (He et al., *Deep Residual Learning for Image Recognition*, CVPR 2016),
as torchvision ``models.resnet`` defines them: 7×7/2 stem, 3×3/2 max-pool, four stages of
BasicBlocks [2, 2, 2, 2] or Bottlenecks [3, 4, 6, 3] (expansion 4, stride on the 3×3 conv — "ResNet
v1.5"), 1×1 conv + BN projection shortcuts, ``AdaptiveAvgPool2d((1, 1))`` → flatten → Linear.

Deviation: ``width_mult`` scales the stage widths (64, 128, 256, 512), for the small test variants;
1.0 is the published network."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], layers: tuple[int, ...], width_mult: float = 1.0,
                 num_classes: int = 1000) -> None:
        super().__init__()
        widths = [max(4, round(w * width_mult)) for w in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = widths[0], []
        self.stage_channels: list[int] = []  # output channels of layer1..layer4 (for the FPN)
        for i, (width, count) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for j in range(count):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
            self.stage_channels.append(cin)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(width_mult: float = 1.0, num_classes: int = 1000) -> ResNet:
    """torchvision ``resnet18``: BasicBlock × [2, 2, 2, 2], 11.7 M parameters at width 1."""
    return ResNet(BasicBlock, (2, 2, 2, 2), width_mult, num_classes)


def resnet50(width_mult: float = 1.0, num_classes: int = 1000) -> ResNet:
    """torchvision ``resnet50``: Bottleneck × [3, 4, 6, 3], 25.6 M parameters at width 1."""
    return ResNet(Bottleneck, (3, 4, 6, 3), width_mult, num_classes)
