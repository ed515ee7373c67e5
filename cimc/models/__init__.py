"""Model zoo: CIFAR-10 VGG9/VGG16/ResNet18 and small test networks.

Everything here imports torch lazily, so ``import cimc.models`` stays cheap;
only building or exporting a model pulls in torch.

>>> from cimc import models
>>> models.available()
['digits_cnn', 'resnet18', 'tiny_cnn', 'tiny_residual', 'vgg16', 'vgg9']
>>> models.input_shape("vgg9")
(1, 3, 32, 32)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cimc.extras import require
from cimc.models import registry

if TYPE_CHECKING:
    import torch

__all__ = ["available", "build", "describe", "example_input", "export_onnx", "input_shape"]


def available() -> list[str]:
    """Sorted names of all zoo models."""
    return sorted(registry.REGISTRY)


def input_shape(name: str) -> tuple[int, ...]:
    """Input shape (N, C, H, W), with N = 1, of model ``name``."""
    return registry.get(name).input_shape


def describe(name: str) -> str:
    """One-line description of model ``name``."""
    return registry.get(name).description


def build(name: str, *, seed: int | None = None, **kwargs: object) -> torch.nn.Module:
    """Build model ``name``; ``kwargs`` go to its builder (e.g. ``num_classes``).

    Needs the ``train`` extra (torch). Without ``seed`` the model has torch's default initialisation and is in
    training mode.  With ``seed`` it is initialised deterministically
    (``torch.manual_seed(seed)`` on a forked RNG), its BatchNorm layers get
    random non-trivial gamma/beta/running statistics, and it is in eval mode.
    """
    require("train", f"the zoo model '{name}'")
    return registry.instantiate(registry.get(name), seed=seed, **kwargs)


def example_input(name: str, seed: int = 0) -> torch.Tensor:
    """A deterministic standard-normal input of model ``name``'s shape."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(input_shape(name), generator=generator)


def export_onnx(name: str, path: str | os.PathLike[str], seed: int = 0) -> None:
    """Export model ``name``, seeded with ``seed``, to a self-contained ONNX file."""
    from cimc.models import export

    model = build(name, seed=seed)
    export.export_onnx(model, example_input(name, seed), path)
