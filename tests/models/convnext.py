"""ConvNeXt-Tiny's stem and first stage (Liu et al., *A ConvNet for the 2020s*, CVPR 2022), as torchvision
``models.convnext.convnext_tiny`` defines them: 4×4/4 conv (96, with bias) → LayerNorm2d (LayerNorm over
channels in channels-last, ε 1e-6); three CNBlocks of 7×7 depthwise conv → permute to NHWC → LayerNorm →
Linear(96, 384) → GELU → Linear(384, 96) → permute back → × layer scale → + input; then the ConvNeXt head
on the stage's output: AdaptiveAvgPool2d(1) → LayerNorm2d → flatten → Linear.

Deviations: only the stem and stage 1 of the four stages (the issue asks for "stem + one stage"); the
layer scale is drawn from U(0.1, 0.5) instead of torchvision's 1e-6 initialisation (which makes every
block the identity up to 1e-6); ``width_mult`` scales the 96 channels for the small variants."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm2d(nn.LayerNorm):
    """torchvision ``models.convnext.LayerNorm2d``: LayerNorm over C of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=True)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class ConvNeXtStage1(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, depth: int = 3) -> None:
        super().__init__()
        dim = max(8, round(96 * width_mult))
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 4, 4, bias=True), LayerNorm2d(dim, eps=1e-6))
        self.stage1 = nn.Sequential(*[CNBlock(dim) for _ in range(depth)])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Flatten(1), nn.Linear(dim, num_classes))
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for block in self.stage1:
                assert isinstance(block, CNBlock)
                block.layer_scale.copy_(torch.rand(block.layer_scale.shape, generator=gen) * 0.4 + 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.stage1(self.stem(x))))


def convnext_tiny_stage1(width_mult: float = 1.0, num_classes: int = 1000) -> ConvNeXtStage1:
    """torchvision ``convnext_tiny`` stem + stage 1 (3 CNBlocks at 96 channels) + head."""
    return ConvNeXtStage1(width_mult, num_classes)
