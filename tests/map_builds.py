"""Builds shared by the maps / inspect / validate / diff tests, compiled once per session.

``build(name, **options)`` compiles a zoo model into a session-wide temporary folder and
caches the path; tests must not modify it — ``copy_build`` gives a private copy to tamper
with, and ``rehash`` rewrites the manifest's sha256 table after a tampering so that the
semantic checks (not just the hash check) are exercised. ``synthetic`` makes cell owners of
any number of layers and macros (no compile) for the pictures' layout tests.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from cimc.api import compile_model
from cimc.build.cell_map import Owners
from cimc.build.directory import dumps, sha256

_ROOT = Path(tempfile.mkdtemp(prefix="cimc-test-builds-"))
atexit.register(shutil.rmtree, _ROOT, True)
WEIGHTS_META = {"format": "cimc-macro-weights/wordline-by-bitline"}


def build(name: str, **options: Any) -> Path:
    return _build(name, tuple(sorted(options.items())))


@functools.cache
def _build(name: str, options: tuple[tuple[str, Any], ...]) -> Path:
    tag = "-".join(f"{k}={v}" for k, v in options)
    out = _ROOT / f"{name}{'-' + tag if tag else ''}"
    compile_model(name, out, **dict(options))
    return out


def copy_build(dest: Path, name: str, **options: Any) -> Path:
    shutil.copytree(build(name, **options), dest)
    return dest


def rehash(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {p.name: sha256(p.read_bytes()) for p in sorted(folder.iterdir())
                         if p.is_file() and p.name != "manifest.json"}
    (folder / "manifest.json").write_bytes(dumps(manifest))


def read_json(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text())


def write_json(folder: Path, name: str, doc: Any) -> None:
    (folder / name).write_bytes(dumps(doc, compact=name == "layout.json"))


def edit_weights(folder: Path, macro: int, edit: Any) -> None:
    """Apply ``edit(array) -> array`` to one macro's cells, keeping the file's other tensors."""
    path = folder / "weights.safetensors"
    tensors = load_file(path)
    key = f"macro_{macro:04d}"
    tensors[key] = np.ascontiguousarray(edit(tensors[key].copy()))
    save_file(tensors, path, metadata=WEIGHTS_META)


@dataclass(frozen=True)
class SyntheticBuild:
    """What the pictures read of a build (name, layer names, slicing notes), for sizes no zoo model has."""

    name: str
    layer_names: list[str]
    slicing_notes: dict[int, str]
    layer_modules: list[str | None] | None = None


def synthetic(layers: int, macros: int, wordlines: int = 256, bitlines: int = 256) -> tuple[SyntheticBuild, Owners]:
    """``layers`` layers filling ``macros`` macros in order, each about ``macros·BL / layers`` bitlines
    wide in runs of 3 segments, layer ``ℓ`` down to wordline ``WL·(1 + ℓ mod 4)/4``; long
    legacy-export names (``/features/features.ℓ/conv/conv.k/Conv``)."""
    total = macros * bitlines
    width = max(total // layers, 1)
    layer = np.minimum(np.arange(total) // width, layers - 1).reshape(macros, bitlines)
    segment = (np.arange(total) // max(width // 3, 1) % 3).reshape(macros, bitlines)
    zeros = np.zeros_like(layer)
    stop = zeros + wordlines * (1 + layer % 4) // 4
    names = [f"/features/features.{i}/conv/conv.{i % 3}/Conv" for i in range(layers)]
    return SyntheticBuild("synthetic", names, {}), Owners(layer, segment, zeros, zeros, stop, wordlines)
