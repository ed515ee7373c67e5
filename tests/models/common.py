"""Shared pieces of the real-architecture corpus: channel rounding, Conv-BN-activation blocks,
deterministic random weights and BatchNorm statistics measured on real activations."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Activation = Callable[..., nn.Module]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible`` (from the TF MobileNet code): round ``value`` to the nearest
    multiple of ``divisor``, never below ``min_value`` and never more than 10% below ``value``."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class ConvBNAct(nn.Sequential):
    """torchvision ``ops.misc.Conv2dNormActivation``: Conv2d(bias=False, padding=(k-1)//2·d) → BN → act."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: Activation | None = nn.ReLU, dilation: int = 1) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2 * dilation, dilation=dilation,
                                             groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)
        self.out_channels = cout


class SqueezeExcitation(nn.Module):
    """torchvision ``ops.misc.SqueezeExcitation``: adaptive_avg_pool2d(1) → 1×1 conv → act → 1×1 conv →
    scale activation → multiply the input (Hu et al., *Squeeze-and-Excitation Networks*, 2018)."""

    def __init__(self, channels: int, squeeze: int, act: Activation = nn.ReLU,
                 scale: Activation = nn.Sigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = act()
        self.scale_activation = scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


def init_weights(model: nn.Module, seed: int) -> None:
    """Deterministic random weights: Kaiming-normal convs (fan-out per group, as torchvision's ResNet,
    MobileNet and EfficientNet initialise them, except that a depthwise conv's fan-out is its own k·k,
    which keeps its outputs in range), N(0, 1/fan-in) linears, N(0, 0.05²) biases, and a random
    BatchNorm/LayerNorm affine (γ ~ U(0.5, 1.5), β ~ N(0, 0.1²)) so that folding the norms is not the
    identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                fan_out = m.weight.shape[0] * m.weight[0, 0].numel() // m.groups
                if isinstance(m, nn.ConvTranspose2d):
                    fan_out = m.weight.shape[1] * m.weight[0, 0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (1.0 / m.in_features) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
            elif isinstance(m, nn.BatchNorm2d | nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def calibrate_batchnorm(model: nn.Module, input_shape: tuple[int, ...], seed: int, batches: int = 4,
                        batch_size: int = 8) -> nn.Module:
    """Set every BatchNorm's running mean/variance to the statistics of the activations it sees:
    forward ``batches`` random N(0, 1) batches in train mode with ``momentum=None`` (a cumulative
    average), then return the model in eval mode. The activations of the eval model then stay in
    range, as in a trained network."""
    gen = torch.Generator().manual_seed(seed + 1)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn((batch_size, *input_shape[1:]), generator=gen))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    return model.eval()


def finish(model: nn.Module, input_shape: tuple[int, ...], seed: int) -> nn.Module:
    """Random weights (``init_weights``) and measured BN statistics (``calibrate_batchnorm``), eval mode."""
    init_weights(model, seed)
    return calibrate_batchnorm(model, input_shape, seed)
