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
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cimc.extras import require
from cimc.models import registry

if TYPE_CHECKING:
    import torch

__all__ = ["available", "build", "describe", "example_input", "export_onnx", "input_shape", "onnx_file"]


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


#: The small zoo models ship as ONNX files (seed 0), so the core install compiles them without
#: torch; ``python3 scripts/ship_zoo.py`` rewrites them. Those in ``TRAINED`` ship trained on their
#: dataset (``digits_cnn``: scikit-learn's digits, the recipe in ``scripts/ship_zoo.py``); the
#: others equal a fresh export (tests/test_zoo.py checks both).
SHIPPED = ("digits_cnn", "tiny_cnn", "tiny_residual")
TRAINED = ("digits_cnn",)
SHIPPED_DIR = Path(__file__).parent / "shipped"


def shipped(name: str) -> Path | None:
    """The shipped ONNX file of zoo model ``name`` (seed 0; trained if in ``TRAINED``), if it has one."""
    return SHIPPED_DIR / f"{name}.onnx" if name in SHIPPED else None


def export_onnx(name: str, path: str | os.PathLike[str], seed: int = 0, *, fresh: bool = False) -> None:
    """Write model ``name``, seeded with ``seed``, as a self-contained ONNX file: a copy of the
    shipped file where there is one (seed 0, not ``fresh``; trained for the ``TRAINED`` models),
    else exported with torch from its seeded, untrained definition, through the export cache
    (``cimc.models.cache``) unless ``fresh``."""
    from cimc.models import cache, export

    def torch_export(target: Path) -> None:
        export.export_onnx(build(name, seed=seed), example_input(name, seed), target)

    if fresh:
        torch_export(Path(path))
        return
    copy = shipped(name) if seed == 0 else None
    if copy is not None:
        shutil.copyfile(copy, path)
        return
    require("train", f"the zoo model '{name}'")
    cache.cached_export(name, seed, Path(path), torch_export)  # looks the cache up once


def stored_file(name: str, seed: int = 0) -> Path | None:
    """The file ``export_onnx`` would copy for model ``name`` (seed ``seed``): the shipped file,
    else the export cache's entry; ``None`` when it must export. Without the shipped file it
    needs the ``train`` extra, as ``export_onnx`` does."""
    from cimc.models import cache

    copy = shipped(name) if seed == 0 else None
    if copy is not None:
        return copy
    require("train", f"the zoo model '{name}'")
    return cache.lookup(name, seed)


@contextmanager
def onnx_file(name: str, seed: int = 0) -> Iterator[Path]:
    """The path of a self-contained ONNX file of model ``name`` (seed ``seed``), the bytes
    ``export_onnx`` writes, for reading: the shipped file or the export cache's entry in place
    (no copy: ``cimc compile vgg9`` reads 37 MB once), else an export into a temporary folder
    that is removed on exit."""
    stored = stored_file(name, seed)
    if stored is not None:
        yield stored
        return
    with tempfile.TemporaryDirectory(prefix="cimc-zoo-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(name, path, seed)
        yield path
