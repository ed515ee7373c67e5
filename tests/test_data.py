"""Datasets: digits split, CIFAR-10 from a tiny generated copy, safe unpickling, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from cimc.data import load_dataset, load_npy_folder
from cimc.errors import SecurityError, UsageError


def test_digits_split_is_fixed_and_disjoint() -> None:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.x.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    assert train.x.min() >= 0.0 and train.x.max() <= 1.0
    assert np.array_equal(load_dataset("digits", "train").y, train.y)


def write_cifar(root: Path, n: int = 6) -> None:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (root / name).write_bytes(pickle.dumps(batch))


def test_cifar_from_local_folder(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    train = load_dataset("cifar10", "train", tmp_path)
    assert train.x.shape == (30, 3, 32, 32) and train.y.tolist()[:6] == list(range(6))


def test_cifar_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="CIFAR-10 not found"):
        load_dataset("cifar10", "test", tmp_path)


def test_hostile_pickle_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(SecurityError):
        load_dataset("cifar10", "test", tmp_path)


def test_npy_folder(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((2, 1, 4, 4), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((1, 4, 4), np.float32))
    assert load_npy_folder(tmp_path, (1, 1, 4, 4)).shape == (3, 1, 4, 4)
    with pytest.raises(UsageError):
        load_dataset("imagenet")
