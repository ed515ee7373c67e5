"""A RetinaNet-style detector head on a Feature Pyramid Network (Lin et al., *Feature Pyramid Networks
for Object Detection*, CVPR 2017; *Focal Loss for Dense Object Detection*, ICCV 2017), as torchvision
``ops.feature_pyramid_network.FeaturePyramidNetwork`` + ``LastLevelP6P7`` and
``models.detection.retinanet.RetinaNetHead`` define them: C3–C5 of a ResNet backbone → 1×1 lateral
convs, top-down ``F.interpolate(size=..., mode="nearest")`` (Resize) + Add, 3×3 output convs; P6 = 3×3/2
conv on P5, P7 = 3×3/2 conv on ReLU(P6); a classification and a box-regression head shared over the five
levels (4 × (3×3 conv → ReLU) → 3×3 conv to A·K resp. A·4), each level's map reshaped
(N, A, K, H, W) → (N, H, W, A, K) → (N, H·W·A, K) and the levels concatenated.

Deviations: a ResNet-18 backbone (torchvision's RetinaNet uses ResNet-50) without the frozen-BN
detail; the two outputs are concatenated into one (N, anchors, K + 4) tensor; the anchor generator,
box decoding and NMS (post-processing, not part of the network) are left out; ``width_mult`` scales the
backbone and the 256 FPN channels, for the small variants."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tests.models.resnet import resnet18


class Head(nn.Sequential):
    def __init__(self, channels: int, outputs: int) -> None:
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        super().__init__(*layers, nn.Conv2d(channels, outputs, 3, padding=1))


class RetinaFPN(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 91, num_anchors: int = 9) -> None:
        super().__init__()
        self.backbone = resnet18(width_mult)
        del self.backbone.fc, self.backbone.avgpool
        widths = self.backbone.stage_channels[1:]
        c = max(8, round(256 * width_mult))
        self.inner_blocks = nn.ModuleList([nn.Conv2d(w, c, 1) for w in widths])
        self.layer_blocks = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in widths])
        self.p6, self.p7 = nn.Conv2d(c, c, 3, 2, 1), nn.Conv2d(c, c, 3, 2, 1)
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.cls_head = Head(c, num_anchors * num_classes)
        self.box_head = Head(c, num_anchors * 4)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = self.backbone
        x = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
        c3 = b.layer2(x)
        c4 = b.layer3(c3)
        c5 = b.layer4(c4)
        last = self.inner_blocks[2](c5)
        results = [self.layer_blocks[2](last)]
        for i, c_i in ((1, c4), (0, c3)):
            lateral = self.inner_blocks[i](c_i)
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[i](last))
        p6 = self.p6(results[-1])
        return [*results, p6, self.p7(F.relu(p6))]

    def _flat(self, y: torch.Tensor, k: int) -> torch.Tensor:
        n, _, h, w = y.shape
        return y.view(n, self.num_anchors, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.features(x)
        cls = torch.cat([self._flat(self.cls_head(p), self.num_classes) for p in levels], dim=1)
        box = torch.cat([self._flat(self.box_head(p), 4) for p in levels], dim=1)
        return torch.cat([cls, box], dim=2)


def retinanet_fpn(width_mult: float = 1.0, num_classes: int = 91) -> RetinaFPN:
    """ResNet-18 + FPN (P3–P7) + RetinaNet heads, 9 anchors, 91 COCO classes at full size."""
    return RetinaFPN(width_mult, num_classes)
