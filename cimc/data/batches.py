"""Data from Python: a numpy array, a ``Dataset``, or any iterable of batches ``(x, y)`` (or bare
``x``) whose items are numpy arrays or torch tensors — a ``torch.utils.data.DataLoader`` is one.

Batches are read in order until enough samples are collected (``limit``), converted with
``numpy.asarray`` (a tensor through ``.detach().cpu().numpy()``) and concatenated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cimc.data.builtin import Dataset
from cimc.errors import UsageError


def as_array(value: Any) -> np.ndarray:
    """A numpy array of ``value`` (a torch tensor is detached and moved to the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def collect(source: Any, limit: int | None = None, labelled: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs and labels (``None`` when the batches have none) of ``source`` (module doc)."""
    if isinstance(source, Dataset):
        return source.x[:limit], source.y[:limit]
    if isinstance(source, np.ndarray) or hasattr(source, "detach"):
        return as_array(source)[:limit].astype(np.float32), None
    if not isinstance(source, Iterable):
        raise UsageError(f"cannot read data from a {type(source).__name__}",
                         hint="pass a dataset name or path, an array, or an iterable of (x, y) batches")
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    count = 0
    for batch in source:
        if isinstance(batch, tuple | list):
            if len(batch) < 1:
                raise UsageError("an empty batch")
            xs.append(as_array(batch[0]).astype(np.float32))
            if len(batch) > 1:
                ys.append(as_array(batch[1]).reshape(-1).astype(np.int64))
        else:
            xs.append(as_array(batch).astype(np.float32))
        count += xs[-1].shape[0]
        if limit is not None and count >= limit:
            break
    if not xs:
        raise UsageError("the data iterable yielded no batches")
    x = np.concatenate(xs)[:limit]
    if labelled and len(ys) != len(xs):
        raise UsageError("evaluation needs (x, y) batches; these have no labels")
    y = np.concatenate(ys)[:limit] if ys and len(ys) == len(xs) else None
    if y is not None and y.shape[0] != x.shape[0]:
        raise UsageError(f"the batches hold {x.shape[0]} inputs but {y.shape[0]} labels")
    return np.ascontiguousarray(x), y


def inputs_of(source: Any, limit: int | None = None) -> np.ndarray:
    """The inputs of ``source`` (calibration)."""
    return collect(source, limit, labelled=False)[0]


def dataset_of(source: Any, limit: int | None = None, name: str = "python") -> Dataset:
    """A labelled ``Dataset`` of ``source`` (evaluation)."""
    x, y = collect(source, limit)
    assert y is not None
    return Dataset(name, x, y, int(y.max()) + 1 if y.size else 0)
