"""Pictures of a build's weight pool (docs/weight-pool.md; ``weight_pool.safetensors``), drawn
with numpy on a ``raster.Canvas`` as 8-bit PNGs — for ``cimc maps`` and the HTML report.

* **The pool** (``pool.png``): the pool as it sits in the macro, one bitline per pool vector
  ``k`` (across) and its ``L`` wordlines (down); a ``+1`` cell in the vector's colour, a ``−1``
  cell in the same colour mixed with 70 % white.
* **Index tables** (``pool_index_NNNN.png``, ``NNNN`` the layer's index in ``layout.json``): vector
  positions ``s`` down, output channels ``o`` across; cell ``(s, o)`` in the colour of pool vector
  ``index[s, o]``, with a black centre dot where the position keeps an error vector. The title
  names the layer, its distinct indices and its kept error vectors.

Pool vector ``k`` has colour ``k mod C`` of ``C = min(P, COLORS)`` hues (golden-angle steps over
the hue circle; more vectors than that repeat colours). Cells are ``cell_size`` pixels square, so a
picture is at most ``MAX_PIXELS`` wide and tall; tables wider or taller than ``MAX_CELLS`` cells show
their first ``MAX_CELLS`` (the title says so). ``read_pool`` reads and checks the file (a
``BuildError`` for a file that does not fit the layout; ``cimc validate`` checks the rest).
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cimc.backend.pool_file import FILE, layer_key
from cimc.build.reader import BuildDir, load_weights
from cimc.errors import BuildError
from cimc.safe_text import printable
from cimc.views.palette import lighten
from cimc.views.raster import BLACK, Canvas, text_width

COLORS = 96
MAX_PIXELS = 1200
MAX_CELLS = 1200
TITLE = 22
MARGIN = 6


@dataclass(frozen=True)
class PooledLayer:
    """One pooled layer's tables: its layout index, node name, ``index (S, Cout)`` and the
    ``(S, Cout)`` mask of positions that keep an error vector."""

    layer: int
    name: str
    index: np.ndarray
    kept: np.ndarray


@dataclass(frozen=True)
class PoolTables:
    """The pool ``(P, L)`` of ``±1`` and every pooled layer's tables."""

    pool: np.ndarray
    layers: list[PooledLayer]


def read_pool(build: BuildDir) -> PoolTables | None:
    """The build's pool and index tables (``None`` when it has none)."""
    if not build.has(FILE):
        return None
    arrays = load_weights(build.path / FILE)
    pool = arrays.get("pool")
    if pool is None or pool.ndim != 2 or pool.shape[0] < 1 or not np.isin(pool, (-1, 1)).all():
        raise BuildError(f"{FILE}: 'pool' must be a (P, L) array of ±1 (run cimc validate)")
    layers = []
    for i, entry in enumerate(build.layout.layers):
        if entry.pool_vector_length is None:
            continue
        index, error = arrays.get(layer_key(i, "index")), arrays.get(layer_key(i, "error"))
        shape = (len(entry.segments), entry.cout)
        if index is None or index.shape != shape or index.dtype.kind not in "iu" or (index.size > 0 and (
                int(index.min()) < 0 or int(index.max()) >= pool.shape[0])):
            raise BuildError(f"{FILE}: the index table of layer {i} must be {shape} integers in [0, {pool.shape[0]})")
        if error is not None and error.shape[:2] != shape:
            raise BuildError(f"{FILE}: the error terms of layer {i} must be {shape} × L")
        kept = np.zeros(shape, dtype=bool) if error is None else np.any(error != 0, axis=2)
        layers.append(PooledLayer(i, entry.node, index.astype(np.int64), kept))
    return PoolTables(pool.astype(np.int8), layers)


def vector_colors(count: int) -> list[str]:
    """``min(count, COLORS)`` distinct hex colours (golden-angle hues, two lightness levels)."""
    out = []
    for k in range(min(count, COLORS)):
        r, g, b = colorsys.hls_to_rgb((k * 0.618033988749895) % 1.0, 0.42 if k % 2 else 0.55, 0.75)
        out.append(f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}")
    return out


def cell_size(rows: int, cols: int) -> int:
    """Pixels per cell: as large as fits ``MAX_PIXELS`` either way, 1 to 12."""
    return int(max(1, min(12, MAX_PIXELS // max(cols, 1), MAX_PIXELS // max(rows, 1))))


def _grid(codes: np.ndarray, dots: np.ndarray | None, title: str, palette: list[str]) -> Canvas:
    """A canvas with ``title`` above the ``codes`` grid (palette indices into ``palette``), framed."""
    rows, cols = min(codes.shape[0], MAX_CELLS), min(codes.shape[1], MAX_CELLS)
    if (rows, cols) != codes.shape:
        title += f" (first {rows}×{cols} of {codes.shape[0]}×{codes.shape[1]} shown)"
    codes = codes[:rows, :cols]
    c = cell_size(rows, cols)
    width = max(cols * c, text_width(title, 12)) + 2 * MARGIN
    canvas = Canvas(TITLE + rows * c + 2 * MARGIN, width)
    lut = np.array([canvas.color(x) for x in palette], dtype=np.uint8)
    cells = np.repeat(np.repeat(lut[codes], c, axis=0), c, axis=1)  # every cell c×c pixels, vectorised
    if dots is not None and c >= 3:
        mask = np.zeros((c, c), dtype=bool)
        mask[c // 2 - (c > 4):c // 2 + 1 + (c > 4), c // 2 - (c > 4):c // 2 + 1 + (c > 4)] = True
        cells = np.where(np.kron(dots[:rows, :cols], mask).astype(bool), BLACK, cells)
    canvas.index[TITLE + MARGIN:TITLE + MARGIN + rows * c, MARGIN:MARGIN + cols * c] = cells
    canvas.frame(MARGIN, TITLE + MARGIN, MARGIN + cols * c, TITLE + MARGIN + rows * c)
    canvas.text((MARGIN, 4), title, size=12)
    return canvas


def pool_canvas(tables: PoolTables) -> Canvas:
    """The pool's bitlines (module doc)."""
    p, length = tables.pool.shape
    colors = vector_colors(p)
    palette = colors + [lighten(x, 0.7) for x in colors]
    k = np.arange(p) % len(colors)
    codes = np.where(tables.pool.T > 0, k[None, :], k[None, :] + len(colors))  # (L, P): wordlines × bitlines
    title = f"weight pool: {p} vectors (bitlines) × {length} wordlines; dark +1, light −1"
    return _grid(codes, None, title, palette)


def index_canvas(tables: PoolTables, layer: PooledLayer) -> Canvas:
    """One layer's index table (module doc)."""
    colors = vector_colors(tables.pool.shape[0])
    used = int(np.unique(layer.index).size)
    title = (f"layer {layer.layer} {printable(layer.name)}: {layer.index.shape[0]} positions × "
             f"{layer.index.shape[1]} outputs, {used} of {tables.pool.shape[0]} pool vectors used")
    if layer.kept.any():
        title += f", {int(layer.kept.sum())} error vectors kept (dots)"
    return _grid(layer.index % len(colors), layer.kept if layer.kept.any() else None, title, colors)


def png_bytes(canvas: Canvas) -> bytes:
    """The canvas as PNG file bytes (for the HTML report's inline images)."""
    from PIL import Image

    image = Image.fromarray(canvas.pixels())
    image.putpalette([c for rgb in canvas.palette for c in rgb])
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=6)
    return buffer.getvalue()


def write_pool_maps(build: BuildDir, out: Path) -> list[Path]:
    """``pool.png`` and one ``pool_index_NNNN.png`` per pooled layer (nothing for an unpooled build)."""
    tables = read_pool(build)
    if tables is None:
        return []
    written = [pool_canvas(tables).png(out / "pool.png")]
    written += [index_canvas(tables, x).png(out / f"pool_index_{x.layer:04d}.png") for x in tables.layers]
    return written
