"""ShuffleNetV2 ×1.0 (Ma et al., *ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design*, ECCV 2018), as torchvision ``models.shufflenetv2.shufflenet_v2_x1_0`` defines it: 3×3/2 conv
(24) → BN → ReLU → 3×3/2 max-pool; stages of [4, 8, 4] units with [116, 232, 464] channels — a stride-2
unit runs two branches on the whole input, a stride-1 unit splits the channels in two
(``x.chunk(2, dim=1)``) and transforms one half; both Concat and channel-shuffle (view → transpose →
view, groups 2); 1×1 conv to 1024 → BN → ReLU → ``x.mean([2, 3])`` → Linear.

Deviation: ``width_mult`` scales the stage widths (rounded to even) and the last conv, for the small
variants; 1.0 is the published network."""

from __future__ import annotations

import torch
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


def _dw(c: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c)]


def _pw(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        self.branch1 = nn.Sequential(*_dw(cin, stride), *_pw(cin, half)) if stride > 1 else nn.Sequential()
        self.branch2 = nn.Sequential(*_pw(cin if stride > 1 else half, half), *_dw(half, stride), *_pw(half, half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, repeats: tuple[int, ...], channels: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = channels[0]
        stages = []
        for count, cout in zip(repeats, channels[1:-1], strict=True):
            stages.append(nn.Sequential(ShuffleUnit(cin, cout, 2), *[ShuffleUnit(cout, cout, 1)
                                                                      for _ in range(count - 1)]))
            cin = cout
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(*_pw(cin, channels[-1]))
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean([2, 3]))


def shufflenet_v2(width_mult: float = 1.0, num_classes: int = 1000) -> ShuffleNetV2:
    """torchvision ``shufflenet_v2_x1_0`` at width 1: 2.3 M parameters."""
    stages = tuple(2 * max(2, round(c * width_mult / 2)) for c in (116, 232, 464))
    last = 1024 if width_mult >= 1.0 else max(8, round(1024 * width_mult))
    return ShuffleNetV2((4, 8, 4), (24, *stages, last), num_classes)
