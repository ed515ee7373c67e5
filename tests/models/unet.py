"""U-Net (Ronneberger et al., *U-Net: Convolutional Networks for Biomedical Image Segmentation*, MICCAI
2015) in its common PyTorch form (torchvision has none; this follows the widely used ``milesial/Pytorch-UNet``
``unet_model.py``): DoubleConv = (3×3 conv, padding 1, no bias → BN → ReLU) ×2; encoder 64 → 128 → 256 →
512 → 1024 with 2×2 max-pool between; decoder of four Up blocks — either ``ConvTranspose2d(c, c/2, 2,
stride 2)`` or ``Upsample(scale 2, bilinear, align_corners=True)`` (then the bottom width is halved, as
in the reference) — each followed by a Concat with the skip and a DoubleConv; 1×1 conv to the classes.
Padding to the skip's size is a no-op for inputs divisible by 16 and is left out.

Deviation: ``width_mult`` scales the 64-channel base, for the small variants."""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, mid: int | None = None) -> None:
        mid = mid or cout
        super().__init__(nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Down(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout))


class Up(nn.Module):
    def __init__(self, cin: int, cout: int, bilinear: bool) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(cin, cout, cin // 2)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
            self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 2, bilinear: bool = False) -> None:
        super().__init__()
        c = [max(2, round(64 * width_mult)) * 2**i for i in range(5)]
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(3, c[0])
        self.down1, self.down2, self.down3 = Down(c[0], c[1]), Down(c[1], c[2]), Down(c[2], c[3])
        self.down4 = Down(c[3], c[4] // factor)
        self.up1 = Up(c[4], c[3] // factor, bilinear)
        self.up2 = Up(c[3], c[2] // factor, bilinear)
        self.up3 = Up(c[2], c[1] // factor, bilinear)
        self.up4 = Up(c[1], c[0], bilinear)
        self.outc = nn.Conv2d(c[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(self.down4(x4), x4)
        return self.outc(self.up4(self.up3(self.up2(x, x3), x2), x1))


def unet_transpose(width_mult: float = 1.0, num_classes: int = 2) -> UNet:
    """U-Net with ConvTranspose2d upsampling: 31.0 M parameters at width 1."""
    return UNet(width_mult, num_classes, bilinear=False)


def unet_bilinear(width_mult: float = 1.0, num_classes: int = 2) -> UNet:
    """U-Net with bilinear (align_corners) Resize upsampling: 17.3 M parameters at width 1."""
    return UNet(width_mult, num_classes, bilinear=True)
