"""EfficientNet-B0 (Tan & Le, *EfficientNet: Rethinking Model Scaling for CNNs*, ICML 2019), as
torchvision ``models.efficientnet.efficientnet_b0`` defines it: 3×3/2 SiLU stem (32), seven MBConv
stages (expansion, kernel, stride, in, out, layers) = (1,3,1,32,16,1) (6,3,2,16,24,2) (6,5,2,24,40,2)
(6,3,2,40,80,3) (6,5,1,80,112,3) (6,5,2,112,192,4) (6,3,1,192,320,1); each MBConv: 1×1 expand (SiLU),
k×k depthwise (SiLU), SE (avgpool → 1×1 conv → SiLU → 1×1 conv → Sigmoid → Mul; squeeze channels
``max(1, in // 4)``), 1×1 project, residual when stride 1 and in == out (stochastic depth is the
identity at inference); 1×1 conv to 1280 (SiLU), AdaptiveAvgPool2d(1) → flatten → Dropout(0.2) →
Linear. BatchNorm2d with its defaults (torchvision passes ε = 1e-3 only to B5–B7).

``width_mult`` is EfficientNet's own width coefficient (``make_divisible(c · w, 8)``); depth is kept."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from tests.models.common import ConvBNAct, SqueezeExcitation, make_divisible

B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        expanded = make_divisible(cin * expand, 8)
        act = partial(nn.SiLU, inplace=True)
        layers: list[nn.Module] = [] if expanded == cin else [ConvBNAct(cin, expanded, 1, act=act)]
        layers += [ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act),
                   SqueezeExcitation(expanded, max(1, cin // 4), act=act),
                   ConvBNAct(expanded, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class EfficientNet(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()

        def adjust(c: int) -> int:
            return make_divisible(c * width_mult, 8)

        act = partial(nn.SiLU, inplace=True)
        layers: list[nn.Module] = [ConvBNAct(3, adjust(B0[0][3]), 3, 2, act=act)]
        for expand, kernel, stride, cin, cout, count in B0:
            stage = [MBConv(adjust(cin) if i == 0 else adjust(cout), adjust(cout), expand, kernel,
                            stride if i == 0 else 1) for i in range(count)]
            layers.append(nn.Sequential(*stage))
        last_in = adjust(B0[-1][4])
        layers.append(ConvBNAct(last_in, 4 * last_in, 1, act=act))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(4 * last_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet_b0(width_mult: float = 1.0, num_classes: int = 1000) -> EfficientNet:
    """torchvision ``efficientnet_b0``: 5.3 M parameters at width 1."""
    return EfficientNet(width_mult, num_classes)
