"""Looking at a build (issue 6): the per-cell owner map, ``cimc validate`` and the HTML report
on the paper's VGG16 (240 macros × 65,536 cells), each against a plain reference.

* ``cell-map/<model>``: ``owners(layout).layer_grid()`` — one broadcast comparison over
  ``(macros, WL, BL)`` — against filling the same grid bitline by bitline in Python;
* ``validate/<model>``: every check of ``cimc validate`` except recompiling the source,
  against the floor any validator pays: reading and hashing every file of the build;
* ``html/<model>``: the self-contained HTML report against ``json.load`` of ``layout.json``;
* ``maps/<model>``: every macro's PNG map (``cimc maps``' drawing, one process) against the
  floor of writing as many PNGs of the same size: macro 0's picture encoded again each time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Benchmark


@dataclass
class BuildState:
    root: Path
    build: Path
    layout: Any  # cimc.documents.layout.Layout (imported lazily, like cimc everywhere here)


def _setup(model: str) -> BuildState:
    from cimc.api import compile_model
    from cimc.documents.layout import Layout

    root = Path(tempfile.mkdtemp(prefix="cimc-bench-inspect-"))
    compile_model(model, root / "build")
    layout = Layout.model_validate_json((root / "build" / "layout.json").read_bytes())
    return BuildState(root, root / "build", layout)


def _teardown(state: BuildState) -> None:
    shutil.rmtree(state.root, ignore_errors=True)


def grid_vectorised(state: BuildState) -> np.ndarray:
    from cimc.build.cell_map import owners

    return owners(state.layout).layer_grid()


def grid_loop(state: BuildState) -> np.ndarray:
    """The same grid, one bitline at a time."""
    wl, bl = state.layout.macro.wordlines, state.layout.macro.bitlines
    rows = [[s.row_stop - s.row_start for s in x.segments] for x in state.layout.layers]
    grid = np.full((len(state.layout.macros), wl, bl), -1, dtype=np.int32)
    for m, owner in enumerate(state.layout.macros):
        for b, layer in enumerate(owner.layer):
            if layer >= 0:
                start = owner.wordline_start[b]
                grid[m, start:start + rows[layer][owner.segment[b]], b] = layer
    return grid


def validate(state: BuildState) -> object:
    from cimc.emulator.validate import validate_build

    return validate_build(state.build, reference=False)


def hash_files(state: BuildState) -> object:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(state.build.iterdir())]


def html(state: BuildState) -> object:
    from cimc.build.reader import read_build
    from cimc.views.html_report import html_report

    return html_report(read_build(state.build))


def maps(state: BuildState) -> object:
    from cimc.build.reader import read_build
    from cimc.views.placement_map import write_maps

    return write_maps(read_build(state.build), state.root / "maps", overview=False)


def encode_pngs(state: BuildState) -> object:
    from PIL import Image

    from cimc.build.reader import read_build
    from cimc.views.macro_png import MacroRaster

    b = read_build(state.build)
    image = Image.fromarray(MacroRaster(b, b.owners).draw(0).rgb())
    folder = state.root / "floor"
    folder.mkdir(exist_ok=True)
    for m in range(b.num_macros):
        image.save(folder / f"macro_{m:04d}.png", compress_level=1)
    return folder


def load_layout(state: BuildState) -> object:
    return json.loads((state.build / "layout.json").read_text())


def benchmarks(quick: bool) -> list[Benchmark]:
    model = "vgg9" if quick else "vgg16"
    pairs = [("cell-map", grid_vectorised, grid_loop, "bitline-by-bitline Python loop", 0.3),
             ("validate", validate, hash_files, "read + sha256 of every file", None),
             ("html", html, load_layout, "json.load(layout.json)", 3.0),
             ("maps", maps, encode_pngs, "as many RGB PNGs of one picture", None)]
    return [Benchmark(f"{name}/{model}", setup=lambda: _setup(model), run=run, reference=ref, reference_name=label,
                      target_ratio=target, teardown=_teardown, rounds=3 if quick else 5)
            for name, run, ref, label, target in pairs]
