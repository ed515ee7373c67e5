"""Image folders in the ImageFolder layout: ``root/<class>/<image>.png|.jpg|.jpeg``.

Class folders are taken in sorted order (``classes``) and give the labels 0, 1, …; images
inside one class in sorted order. Each file is read as untrusted (``cimc.data.files``),
decoded by Pillow (PNG or JPEG only; a corrupt or other file is a ``UsageError`` naming it)
and preprocessed (``cimc.data.preprocess``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cimc.data.files import MAX_IMAGE_BYTES, entries, read_bytes
from cimc.data.preprocess import Preprocess
from cimc.errors import UsageError
from cimc.limits import DATASET_IMAGES, IMAGE_PIXELS

SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")
MAX_PIXELS = IMAGE_PIXELS
MAX_IMAGES = DATASET_IMAGES


def class_folders(folder: Path, root: Path) -> list[Path]:
    """The class subfolders of ``folder`` (sorted)."""
    return [p for p in entries(folder, root) if p.is_dir()]


def is_image_folder(folder: Path, root: Path) -> bool:
    """Whether ``folder`` has a class subfolder holding an image."""
    return any(p.suffix.lower() in SUFFIXES for d in class_folders(folder, root) for p in entries(d, root))


def load_image_folder(folder: Path, root: Path, shape: tuple[int, ...], pre: Preprocess,
                      classes: list[str] | None = None, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Images (NCHW float32), labels and the class count of ``folder``; ``classes`` fixes the
    label order (default: the sorted class folders of ``folder``); ``limit`` keeps the first
    ``limit`` images of every class at most (the order is by class, then by name)."""
    names = classes if classes is not None else [d.name for d in class_folders(folder, root)]
    if not names:
        raise UsageError(f"{folder} has no class subfolders",
                         hint="use the ImageFolder layout: DIR/<class>/<image>.png")
    channels = _channels(shape)
    size = pre.size(shape)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        sub = folder / name
        if not sub.is_dir():
            continue
        files = [p for p in entries(sub, root) if p.suffix.lower() in SUFFIXES]
        for path in files[:limit]:
            images.append(decode(path, root, channels, size))
            labels.append(label)
            if len(images) > MAX_IMAGES:
                raise UsageError(f"{folder} holds more than {MAX_IMAGES} images")
    if not images:
        raise UsageError(f"no PNG or JPEG images in the class folders of {folder}")
    x = pre.normalise(np.stack(images))
    return x, np.asarray(labels, np.int64), len(names)


def decode(path: Path, root: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One image as a (C, H, W) float32 array in [0, 1]."""
    from PIL import Image

    raw = read_bytes(path, root, MAX_IMAGE_BYTES)
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.format not in FORMATS:
                raise UsageError(f"{path.name} is {im.format or 'not an image'}, not PNG or JPEG")
            if im.width * im.height > MAX_PIXELS:
                raise UsageError(f"{path.name} has {im.width}×{im.height} pixels, more than {MAX_PIXELS}")
            im.load()
            img = im.convert("L" if channels == 1 else "RGB")
    except UsageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"cannot decode image {path}: {exc}") from exc
    height, width = size
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _channels(shape: tuple[int, ...]) -> int:
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise UsageError(f"image data needs a model input of shape N,1,H,W or N,3,H,W; this one is {list(shape)}")
    return int(shape[1])
