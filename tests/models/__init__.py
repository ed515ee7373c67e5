"""A corpus of real CNN architectures written in torch from their published definitions (torchvision's
module structure), with deterministic random weights and BatchNorm statistics measured on real
activations. Each entry has a full variant (224×224, 1000 classes: the published network) and a small
one (a width multiplier, 32×32 or 64×64 input, few classes) that runs in well under a second.

    model, x = build("resnet50", small=True)

``tests/models/export.py`` exports them the way users do; ``tests/test_real_models.py`` and
``scripts/real_models.py`` run them through cimc.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tests.models.common import finish
from tests.models.convnext import convnext_tiny_stage1
from tests.models.densenet import densenet121
from tests.models.efficientnet import efficientnet_b0
from tests.models.fpn import retinanet_fpn
from tests.models.mobilenet import mobilenet_v2, mobilenet_v3_small
from tests.models.regnet import regnet_x_400mf, regnet_y_400mf
from tests.models.resnet import resnet18, resnet50
from tests.models.shufflenet import shufflenet_v2
from tests.models.squeezenet import squeezenet1_1
from tests.models.unet import unet_bilinear, unet_transpose

Shape = tuple[int, int, int, int]
FULL: Shape = (1, 3, 224, 224)


@dataclass(frozen=True)
class Arch:
    """One architecture: its builder, the full input shape, the small variant's kwargs and input shape."""

    builder: Callable[..., nn.Module]
    small: dict[str, Any]
    small_shape: Shape = (1, 3, 32, 32)
    full: dict[str, Any] = field(default_factory=dict)
    full_shape: Shape = FULL


SMALL = {"width_mult": 0.25, "num_classes": 10}
REGISTRY: dict[str, Arch] = {
    "resnet18": Arch(resnet18, SMALL),
    "resnet50": Arch(resnet50, SMALL),
    "mobilenet_v2": Arch(mobilenet_v2, SMALL),
    "mobilenet_v3_small": Arch(mobilenet_v3_small, SMALL),
    "efficientnet_b0": Arch(efficientnet_b0, SMALL),
    "densenet121": Arch(densenet121, SMALL),
    "shufflenet_v2": Arch(shufflenet_v2, SMALL),
    "squeezenet1_1": Arch(squeezenet1_1, SMALL),
    "regnet_x_400mf": Arch(regnet_x_400mf, SMALL),
    "regnet_y_400mf": Arch(regnet_y_400mf, SMALL),
    "convnext_tiny_stage1": Arch(convnext_tiny_stage1, SMALL),
    "unet_transpose": Arch(unet_transpose, {"width_mult": 0.125, "num_classes": 2}),
    "unet_bilinear": Arch(unet_bilinear, {"width_mult": 0.125, "num_classes": 2}),
    "retinanet_fpn": Arch(retinanet_fpn, {"width_mult": 0.25, "num_classes": 5}, (1, 3, 64, 64)),
}


def build(name: str, small: bool = False, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The model (eval mode, random weights, measured BN statistics) and a deterministic N(0, 1) input."""
    arch = REGISTRY[name]
    shape = arch.small_shape if small else arch.full_shape
    torch.manual_seed(seed)
    model = finish(arch.builder(**(arch.small if small else arch.full)), shape, seed)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 7))
    return model, x
