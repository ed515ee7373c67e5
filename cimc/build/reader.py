"""Reading a build directory for inspection, maps, diffs and validation.

Nothing here trusts the build: files are read lazily and tolerantly (a missing optional file
is ``None``), JSON that does not parse raises ``BuildError`` naming the file, and the weight
arrays are returned with whatever dtype the build stored (float weights, or int8 cell
codes). The layout is parsed into its model (``documents.layout.Layout``) when first used:
one that does not match its schema is a ``BuildError`` then, while ``layout_json`` gives
the raw JSON for the checks that report such a file. ``cimc validate`` then checks what the
files say; the viewers only display it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from cimc.build.cell_map import Owners, owners
from cimc.documents.layout import Layout
from cimc.documents.parse import parse
from cimc.errors import BuildError, UsageError
from cimc.limits import BUILD_ARRAY_BYTES, BUILD_TEXT_BYTES, MANIFEST_BYTES, MEMORY_BYTES
from cimc.macro import MacroSpec
from cimc.untrusted import check_depth, check_safetensors, load_json, read_regular

log = logging.getLogger(__name__)


MANIFEST = "manifest.json"
LAYOUT = "layout.json"
WEIGHTS = "weights.safetensors"


def limit_of(name: str) -> int:
    """The size limit of the build file ``name`` (``cimc.limits``)."""
    if name == MANIFEST:
        return MANIFEST_BYTES
    return BUILD_ARRAY_BYTES if name.endswith((".safetensors", ".onnx")) else BUILD_TEXT_BYTES


def read_bytes(path: Path) -> bytes:
    """The bytes of one file of a build, or ``BuildError`` naming it. The file must be the
    build's own (``cimc.untrusted.read_regular`` without links): a symbolic link is refused
    before anything is read, and so is anything but a regular file (a FIFO is opened
    non-blocking and refused, never read) and a file over its limit (``limit_of``)."""
    return read_regular(path, limit=limit_of(path.name), error=BuildError, links=False)


def read_json(path: Path) -> Any:
    """Parse one JSON file of a build (nesting bounded), or raise ``BuildError`` naming it."""
    return load_json(read_bytes(path), path.name, BuildError)


@dataclass
class BuildDir:
    """A build directory: its manifest and layout (required) and the other files (optional)."""

    path: Path
    manifest: dict[str, Any]
    _weights: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        report = self.report
        if report and isinstance(report.get("model"), str):
            return str(report["model"])
        source = self.manifest.get("input", {})
        return str(source.get("name", self.path.name)) if isinstance(source, dict) else self.path.name

    @cached_property
    def layout_json(self) -> dict[str, Any]:
        """``layout.json`` as plain JSON (``BuildError`` unless it holds a JSON object)."""
        doc = read_json(self.path / LAYOUT)
        if not isinstance(doc, dict):
            raise BuildError(f"{self.path}: {LAYOUT} must hold a JSON object")
        return doc

    @cached_property
    def layout(self) -> Layout:
        """``layout.json`` as its model, parsed from the bytes by pydantic (no plain JSON in
        between); when it does not match its schema, ``BuildError`` says where."""
        data = read_bytes(self.path / LAYOUT)
        check_depth(data, LAYOUT, BuildError)
        try:
            layout = Layout.model_validate_json(data, strict=True)
        except ValidationError:
            layout = parse(Layout, LAYOUT, self.layout_json)
        check_extent(layout)
        return layout

    @cached_property
    def macro(self) -> MacroSpec:
        """The macro of the layout (``UsageError`` from ``MacroSpec`` becomes ``BuildError``)."""
        try:
            return MacroSpec(**self.layout.macro.to_json())
        except UsageError as exc:
            raise BuildError(f"layout.json has an invalid macro spec: {exc}") from exc

    @cached_property
    def owners(self) -> Owners:
        """The bitline owners of the layout (``cell_map.owners``), computed once."""
        return owners(self.layout)

    @cached_property
    def cell_layers(self) -> np.ndarray:
        """``(M, WL, BL)`` owning layer of every cell (−1 idle), computed once."""
        return self.owners.layer_grid()

    @cached_property
    def report(self) -> dict[str, Any] | None:
        return self.optional_json("report.json")

    @cached_property
    def schedule(self) -> dict[str, Any] | None:
        return self.optional_json("schedule.json")

    def optional_json(self, name: str) -> Any:
        path = self.path / name
        return read_json(path) if self.has(name) else None

    def has(self, name: str) -> bool:
        """Whether the build has an entry ``name`` (a link counts: reading it is refused)."""
        return os.path.lexists(self.path / name)

    def text(self, name: str) -> str | None:
        if not self.has(name):
            return None
        try:
            return read_bytes(self.path / name).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BuildError(f"{name} is not UTF-8 text") from exc

    @property
    def num_macros(self) -> int:
        return len(self.layout.macros)

    @property
    def layer_names(self) -> list[str]:
        return [layer.node for layer in self.layout.layers]

    @property
    def layer_modules(self) -> list[str | None]:
        """Each layer's torch module path (``features.1.conv.0``), ``None`` where not recorded."""
        return [layer.module for layer in self.layout.layers]

    @cached_property
    def slicing_notes(self) -> dict[int, str]:
        """``{layer index: "8-bit weights over 2 cells, 8-bit inputs over 2 DAC cycles"}`` for
        the bit-sliced layers (bits from ``report.json``; the slice counts alone without it)."""
        rows = {x.get("name"): x for x in (self.report or {}).get("layers", []) if isinstance(x, dict)}
        notes = {}
        for i, layer in enumerate(self.layout.layers):
            sw, t = layer.w_slices, layer.a_slices
            row = rows.get(layer.node, {})
            parts = [f"{row.get('w_bits', '?')}-bit weights over {sw} cells"] if sw > 1 else []
            parts += [f"{row.get('a_bits', '?')}-bit inputs over {t} DAC cycles"] if t > 1 else []
            if parts:
                notes[i] = ", ".join(parts)
        return notes

    def weights(self) -> dict[str, np.ndarray]:
        """Every tensor of ``weights.safetensors`` (any dtype); ``BuildError`` if unreadable."""
        if self._weights is None:
            self._weights = load_weights(self.path / WEIGHTS)
        return self._weights

    def macro_weights(self, index: int) -> np.ndarray | None:
        """The ``(WL, BL)`` cell array of macro ``index``, or ``None`` when absent."""
        return self.weights().get(f"macro_{index:04d}")


def load_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    data = read_bytes(path)
    check_safetensors(data, path.name, BuildError)
    try:
        return dict(load(data))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise BuildError(f"{path.name} is not a valid safetensors file: {exc}") from exc


def check_extent(layout: Layout, budget: int = MEMORY_BYTES) -> None:
    """``BuildError`` unless the arrays the layout's figures size fit the memory budget, checked
    in Python integers before any is allocated: every macro's cell grid (``M · WL · BL`` cells,
    8 bytes each at most) and each segment's rows (at most the macro's wordlines, within the
    layer's ``rows``)."""
    wl, bl = layout.macro.wordlines, layout.macro.bitlines
    cells = max(len(layout.macros), 1) * wl * bl
    if 8 * cells > budget:
        raise BuildError(f"{LAYOUT}: {len(layout.macros)} macros of {wl}×{bl} cells would take {8 * cells} bytes, "
                         f"more than the memory budget of {budget}")
    for layer in layout.layers:
        for seg in layer.segments:
            if not seg.row_start < seg.row_stop <= layer.rows or seg.row_stop - seg.row_start > wl:
                raise BuildError(f"{LAYOUT}: layer {layer.index} segment {seg.index} spans rows "
                                 f"{seg.row_start}..{seg.row_stop}, not within the layer's {layer.rows} rows "
                                 f"and the macro's {wl} wordlines")


def read_build(path: str | Path) -> BuildDir:
    """Open a build directory: it must exist and hold a readable manifest and layout."""
    folder = Path(path)
    if not folder.is_dir():
        raise BuildError(f"{folder} is not a build directory (no such folder)",
                         hint="pass the -o folder of a `cimc compile`")
    if not os.path.lexists(folder / MANIFEST):
        raise BuildError(f"{folder} has no {MANIFEST}: not a cimc build directory")
    manifest = read_json(folder / MANIFEST)
    if not os.path.lexists(folder / LAYOUT):
        raise BuildError(f"{folder} has no {LAYOUT}")
    if not isinstance(manifest, dict):
        raise BuildError(f"{folder}: {MANIFEST} must hold a JSON object")
    return BuildDir(folder, manifest)
