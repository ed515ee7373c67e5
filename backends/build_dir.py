"""Writing a build directory atomically: all files go to a temporary sibling folder that is
renamed into place, so a reader sees the previous build or the new one, never half of one.

A folder that exists but was not made by cimc (no ``manifest.json`` naming cimc) is not
replaced unless ``force``. ``manifest.json`` records the sha256 of every other file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cimc.errors import UsageError

MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumps(doc: Any, *, compact: bool = False) -> bytes:
    """Deterministic JSON bytes (sorted keys, fixed separators, trailing newline)."""
    if compact:
        return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def is_cimc_build(folder: Path) -> bool:
    try:
        doc = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("tool") == "cimc"


def check_target(target: Path, force: bool) -> None:
    """Refuse to replace a non-empty folder that cimc did not create (unless ``force``)."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"output path {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not is_cimc_build(target) and not force:
        raise UsageError(f"output folder {target} exists and was not made by cimc",
                         hint="choose another -o or pass --force to replace it")


def write_build(target: Path, files: dict[str, bytes], manifest: dict[str, Any], force: bool = False) -> None:
    """Write ``files`` plus a manifest holding their sha256 into ``target``, atomically."""
    check_target(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cimc-tmp-", dir=target.parent))
    try:
        for name, data in sorted(files.items()):
            _write(tmp / name, data)
        manifest = {**manifest, "files": {name: sha256(data) for name, data in sorted(files.items())}}
        _write(tmp / MANIFEST, dumps(manifest))
        _swap_into_place(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _swap_into_place(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=".cimc-old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
