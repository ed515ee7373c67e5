"""MobileNetV2 (Sandler et al., *MobileNetV2: Inverted Residuals and Linear Bottlenecks*, CVPR 2018)
and MobileNetV3-Small (Howard et al., *Searching for MobileNetV3*, ICCV 2019), as torchvision
``models.mobilenetv2`` / ``models.mobilenetv3`` define them.

* V2: 3×3/2 stem (32), 17 inverted residuals (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2)
  (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1), ReLU6, 1×1 conv to 1280,
  ``adaptive_avg_pool2d(x, (1, 1))`` → flatten → Dropout(0.2) → Linear.
* V3-Small: 3×3/2 Hardswish stem (16), 11 bnecks (kernel, expansion, SE, ReLU/Hardswish, stride as in
  Table 2 of the paper), SE = avgpool → 1×1 conv → ReLU → 1×1 conv → Hardsigmoid → multiply, squeeze
  channels ``make_divisible(expanded // 4, 8)``; 1×1 conv to 576 (Hardswish), AdaptiveAvgPool2d(1),
  Linear(576, 1024) → Hardswish → Dropout(0.2) → Linear; BN ε = 1e-3, momentum 0.01.

``width_mult`` is torchvision's own width multiplier (channels rounded with ``make_divisible``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tests.models.common import Activation, ConvBNAct, SqueezeExcitation, make_divisible

V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1))


class InvertedResidualV2(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(cin * expand)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNAct(cin, hidden, 1, act=nn.ReLU6)]
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        cin = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNAct(3, cin, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in V2_SETTING:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidualV2(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNAct(cin, self.last_channel, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# input channels, kernel, expanded channels, output channels, SE, activation ("RE" | "HS"), stride
V3_SMALL = ((16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
            (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
            (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
            (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1))


class InvertedResidualV3(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, act: Activation,
                 stride: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expanded == cin else [ConvBNAct(cin, expanded, 1, act=act)]
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8), scale=nn.Hardsigmoid))
        layers.append(ConvBNAct(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()

        def adjust(c: int) -> int:
            return make_divisible(c * width_mult, 8)

        first = adjust(V3_SMALL[0][0])
        features: list[nn.Module] = [ConvBNAct(3, first, 3, 2, act=nn.Hardswish)]
        for cin, k, exp, cout, se, act, s in V3_SMALL:
            features.append(InvertedResidualV3(adjust(cin), k, adjust(exp), adjust(cout), se,
                                               nn.ReLU if act == "RE" else nn.Hardswish, s))
        last_in = adjust(V3_SMALL[-1][3])
        features.append(ConvBNAct(last_in, 6 * last_in, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last_channel = adjust(1024)
        self.classifier = nn.Sequential(nn.Linear(6 * last_in, last_channel), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 0.001, 0.01  # torchvision's norm_layer for V3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2(width_mult: float = 1.0, num_classes: int = 1000) -> MobileNetV2:
    """torchvision ``mobilenet_v2``: 3.5 M parameters at width 1."""
    return MobileNetV2(width_mult, num_classes)


def mobilenet_v3_small(width_mult: float = 1.0, num_classes: int = 1000) -> MobileNetV3:
    """torchvision ``mobilenet_v3_small``: 2.5 M parameters at width 1."""
    return MobileNetV3(width_mult, num_classes)
