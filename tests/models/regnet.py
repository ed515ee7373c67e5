"""RegNetX-400MF and RegNetY-400MF (Radosavovic et al., *Designing Network Design Spaces*, CVPR 2020),
as torchvision ``models.regnet.regnet_x_400mf`` / ``regnet_y_400mf`` define them: the stage widths and
depths come from the quantised linear rule (``BlockParams.from_init_params``: depth 22, w0 24,
wa 24.48, wm 2.54, group width 16 for X; depth 16, w0 48, wa 27.89, wm 2.09, group width 8, SE 0.25
for Y), 3×3/2 stem (32) → four stages of ResBottleneckBlocks (1×1 → grouped 3×3 (stride on the first
block) → [SE: avgpool → 1×1 → ReLU → 1×1 → Sigmoid → Mul, squeeze = round(0.25 · block input width)]
→ 1×1, 1×1/2 conv + BN projection, ReLU after the Add) → AdaptiveAvgPool2d((1, 1)) → flatten → Linear.

Deviation: ``width_mult`` scales the stage widths and the group width (``make_divisible`` keeps every
width a multiple of its group width), for the small variants; depths are kept."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tests.models.common import ConvBNAct, SqueezeExcitation, make_divisible


def block_params(depth: int, w_0: float, w_a: float, w_m: float, group_width: int, width_mult: float = 1.0
                 ) -> tuple[list[int], list[int], int]:
    """(stage widths, stage depths, group width): torchvision's ``BlockParams.from_init_params`` (QUANT 8,
    bottleneck multiplier 1) and ``_adjust_widths_groups_compatibilty``; widths then scaled by
    ``width_mult``."""
    cont = np.arange(depth) * w_a + w_0
    capacity = np.round(np.log(cont / w_0) / math.log(w_m))
    widths = (np.round(w_0 * np.power(w_m, capacity) / 8) * 8).astype(int).tolist()
    starts = [i for i in range(depth) if i == 0 or widths[i] != widths[i - 1]]
    stage_widths = [widths[i] for i in starts]
    stage_depths = np.diff([*starts, depth]).tolist()
    if width_mult != 1.0:
        stage_widths = [max(8, round(w * width_mult)) for w in stage_widths]
        group_width = max(4, round(group_width * width_mult))
    groups = [min(group_width, w) for w in stage_widths]
    stage_widths = [make_divisible(w, g) for w, g in zip(stage_widths, groups, strict=True)]
    return stage_widths, stage_depths, group_width


class ResBottleneckBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, group_width: int, se_ratio: float | None) -> None:
        super().__init__()
        self.proj = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if cin != cout or stride != 1 else None)
        layers: list[nn.Module] = [ConvBNAct(cin, cout, 1),
                                   ConvBNAct(cout, cout, 3, stride, groups=cout // min(group_width, cout))]
        if se_ratio:
            layers.append(SqueezeExcitation(cout, round(se_ratio * cin)))
        layers.append(ConvBNAct(cout, cout, 1, act=None))
        self.f = nn.Sequential(*layers)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.proj is None else self.proj(x)
        return self.activation(identity + self.f(x))


class RegNet(nn.Module):
    def __init__(self, widths: list[int], depths: list[int], group_width: int, se_ratio: float | None,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, 2)
        cin, stages = 32, []
        for width, depth in zip(widths, depths, strict=True):
            blocks = [ResBottleneckBlock(cin if i == 0 else width, width, 2 if i == 0 else 1, group_width, se_ratio)
                      for i in range(depth)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.trunk_output = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.trunk_output(self.stem(x)))
        return self.fc(x.flatten(start_dim=1))


def regnet_x_400mf(width_mult: float = 1.0, num_classes: int = 1000) -> RegNet:
    """torchvision ``regnet_x_400mf``: widths [32, 64, 160, 400], depths [1, 2, 7, 12], 5.5 M parameters."""
    return RegNet(*block_params(22, 24, 24.48, 2.54, 16, width_mult), None, num_classes)


def regnet_y_400mf(width_mult: float = 1.0, num_classes: int = 1000) -> RegNet:
    """torchvision ``regnet_y_400mf``: widths [48, 104, 208, 440], depths [1, 3, 6, 6], SE 0.25, 4.3 M parameters."""
    return RegNet(*block_params(16, 48, 27.89, 2.09, 8, width_mult), 0.25, num_classes)
