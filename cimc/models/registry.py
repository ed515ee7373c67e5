"""Registry of zoo models: name -> (builder, input shape, description).

Builders are stored as ``"module:function"`` references and resolved on
demand, so reading the registry (names, shapes, descriptions) does not import
torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: builder reference, (N, C, H, W) input shape, description."""

    builder: str
    input_shape: tuple[int, int, int, int]
    description: str

    def load_builder(self) -> Callable[..., nn.Module]:
        """Import and return the builder function (this imports torch)."""
        module_name, _, attr = self.builder.partition(":")
        builder: Callable[..., nn.Module] = getattr(importlib.import_module(module_name), attr)
        return builder


REGISTRY: dict[str, ModelSpec] = {
    "vgg9": ModelSpec(
        "cimc.models.vgg:vgg9",
        (1, 3, 32, 32),
        "CIFAR-10 VGG9: 8 bias-free 3x3 convs + BN, GAP, Linear(512,10)",
    ),
    "vgg16": ModelSpec(
        "cimc.models.vgg:vgg16",
        (1, 3, 32, 32),
        "CIFAR-10 VGG16: 13 bias-free 3x3 convs + BN, Linear(512,10)",
    ),
    "resnet18": ModelSpec(
        "cimc.models.resnet:resnet18",
        (1, 3, 32, 32),
        "CIFAR-10 ResNet18: 3x3 stem + maxpool, 8 BasicBlocks, parameter-free shortcuts",
    ),
    "tiny_cnn": ModelSpec(
        "cimc.models.tiny:tiny_cnn",
        (1, 3, 8, 8),
        "Tiny 3-conv CNN (8x8) with a 40-channel two-segment conv",
    ),
    "tiny_residual": ModelSpec(
        "cimc.models.tiny:tiny_residual",
        (1, 8, 8, 8),
        "Tiny net with residual Add, Concat, depthwise and grouped convs",
    ),
    "digits_cnn": ModelSpec(
        "cimc.models.tiny:digits_cnn",
        (1, 1, 8, 8),
        "3-conv CNN for sklearn's 8x8 digits (multi-segment convs); ships trained on digits",
    ),
}


def randomise_batchnorm(model: nn.Module) -> None:
    """Give every BatchNorm2d non-trivial affine parameters and running statistics.

    Draws from torch's global RNG: gamma in [0.5, 1.5), beta in [-0.5, 0.5),
    running mean in [-0.5, 0.5) and running variance in [0.5, 2.0).
    """
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)


def instantiate(spec: ModelSpec, seed: int | None = None, **kwargs: object) -> nn.Module:
    """Build ``spec``'s model; with a ``seed``, initialise it reproducibly in eval mode.

    Seeding uses a forked RNG, so the caller's global torch RNG state is untouched.
    """
    import torch

    builder = spec.load_builder()
    if seed is None:
        return builder(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(**kwargs)
        randomise_batchnorm(model)
    return model.eval()


def get(name: str) -> ModelSpec:
    """Return the spec for ``name`` or raise ``KeyError`` listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {sorted(REGISTRY)}") from None
