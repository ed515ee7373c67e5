"""Image preprocessing, one frozen value shared by every command that reads images.

``Preprocess(image_size, mean, std)``: a decoded image is converted to ``L`` (1-channel models)
or ``RGB`` (3-channel models), resized to ``image_size × image_size`` with bilinear filtering
(default: the model's input height and width), scaled to [0, 1], then normalised per channel
as ``(x − mean) / std`` (default: no normalisation; one value applies to every channel). The
``--image-size``, ``--mean`` and ``--std`` options build it (``from_options``); arrays from
``.npz``/``.npy`` files and the built-in datasets are taken as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cimc.errors import UsageError
from cimc.limits import IMAGE_SIZE

MAX_IMAGE_SIZE = IMAGE_SIZE


@dataclass(frozen=True)
class Preprocess:
    """How images become model inputs (module doc)."""

    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.image_size is not None and not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise UsageError(f"image size {self.image_size} must be in 1..{MAX_IMAGE_SIZE}")
        for what, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and (not values or not all(math.isfinite(v) for v in values)):
                raise UsageError(f"--{what} needs finite numbers, got {list(values)}")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise UsageError(f"--std values must be positive, got {list(self.std)}")

    @classmethod
    def from_options(cls, image_size: int | None = None, mean: str | Sequence[float] | None = None,
                     std: str | Sequence[float] | None = None) -> Preprocess:
        """From option values: ``mean``/``std`` as numbers or comma-separated text (``0.5,0.5,0.5``)."""
        return cls(image_size, parse_floats(mean, "mean"), parse_floats(std, "std"))

    def size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The (height, width) images are resized to for a model input of ``shape`` (NCHW)."""
        if self.image_size is not None:
            return self.image_size, self.image_size
        if len(shape) != 4:
            raise UsageError(f"image data needs a model input of shape N,C,H,W; this one is {list(shape)}")
        return int(shape[2]), int(shape[3])

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """``(x − mean) / std`` per channel of the NCHW batch ``x`` in [0, 1]."""
        channels = x.shape[1]
        out = x.astype(np.float32)
        if self.mean is not None:
            out = out - _per_channel(self.mean, channels, "mean")
        if self.std is not None:
            out = out / _per_channel(self.std, channels, "std")
        return np.ascontiguousarray(out, dtype=np.float32)

    def record(self) -> dict[str, object]:
        """The values given (for the manifest and reports): nothing for the defaults."""
        doc: dict[str, object] = {}
        if self.image_size is not None:
            doc["image_size"] = self.image_size
        if self.mean is not None:
            doc["mean"] = list(self.mean)
        if self.std is not None:
            doc["std"] = list(self.std)
        return doc


DEFAULT = Preprocess()


def parse_floats(value: str | Sequence[float] | None, what: str) -> tuple[float, ...] | None:
    """Comma-separated numbers (or a sequence of them) as a tuple of floats."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        return tuple(float(v) for v in items)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--{what} needs comma-separated numbers, got {value!r}") from exc


def _per_channel(values: tuple[float, ...], channels: int, what: str) -> np.ndarray:
    if len(values) not in (1, channels):
        raise UsageError(f"--{what} has {len(values)} values; the model's input has {channels} channel(s)")
    return np.asarray(values if len(values) == channels else values * channels, np.float32)[None, :, None, None]
