"""Placement maps as pictures (PNG / SVG, matplotlib), like the paper's Figs. 3, 12 and 13.

* ``macro_figure``: one macro, wordlines (rows, wordline 0 on top) × bitlines (columns).
  Each cell is coloured by the layer owning it (odd segments a shade lighter), idle cells
  are white, a thin line separates segments and a thick one layers; the legend lists the
  layers on the macro with their segment and bitline counts, and for a bit-sliced layer
  its slicing ("8-bit weights over 2 cells": each output channel is 2 adjacent bitlines).
  The figure grows so the legend is never clipped. This draws the SVG maps; the PNG maps
  are the same picture drawn with numpy (``macro_png``), many times faster.
* ``overview_figure``: every macro as a tile of one mosaic labelled with its usage
  ``cells used / (WL·BL)``, above a stacked bar chart of each macro's usage by layer, and
  a legend of every layer beside them, or under them in columns when it is taller
  (``overview_layout``). Past 20 layers colours repeat, and every picture adds the hatch of
  ``palette.pattern``.
* a build with a weight pool also gets ``pool.png`` (the pool's bitlines) and one
  ``pool_index_NNNN.png`` per pooled layer (its index table), PNG only (``pool_map``).

matplotlib is the optional extra ``cimc[plot]``, imported lazily; figures are drawn with
the Agg canvas directly (no pyplot, no GUI, no global backend switch). SVGs carry no date
and a fixed hash salt, so the same build gives the same files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.build.cell_map import Owners
from cimc.build.reader import BuildDir
from cimc.errors import UsageError
from cimc.progress import Progress
from cimc.untrusted import refuse_special_output
from cimc.views.macro_png import MacroRaster, hatch_masks, hatched, rgb_of, shade_luts
from cimc.views.names import short_names
from cimc.views.palette import DARKEN, GAP, IDLE, darken, layer_color, pattern
from cimc.views.pool_map import FILE as POOL_FILE
from cimc.views.pool_map import write_pool_maps

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
FORMATS = ("png", "svg")
MOSAIC_PIXELS = 2048


def require_matplotlib() -> Any:
    """Import matplotlib or explain how to install it."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as exc:
        raise UsageError("placement maps need matplotlib, which is not installed",
                         hint="pip install 'cimc[plot]'") from exc
    return matplotlib


def _new_figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


class MacroPainter:
    """One figure drawn again for each macro (the SVG maps; PNGs are drawn by
    ``macro_png.MacroRaster``): only the cells, boundaries, title and legend change, so a
    model with hundreds of macros does not rebuild axes and ticks each time."""

    def __init__(self, build: BuildDir, own: Owners) -> None:
        self.build, self.own = build, own
        wl, bl = own.wordlines, own.shape[1]
        self.fig = _new_figure(10.0, 6.4)
        self.ax = self.fig.add_axes((0.07, 0.09, 0.6, 0.82))
        plain, dark, self.patterns = shade_luts(len(build.layer_names), (IDLE,))
        self.plain, self.dark, self.masks = rgb_of(plain), rgb_of(dark), hatch_masks(wl, bl)
        self.image = self.ax.imshow(np.zeros((wl, bl, 3), dtype=np.uint8), interpolation="nearest", aspect="auto",
                                    extent=(-0.5, bl - 0.5, wl - 0.5, -0.5))
        self.ax.set_xlabel("bitline")
        self.ax.set_ylabel("wordline")
        self.ax.set_xticks(*_ticks(bl))
        self.ax.set_yticks(*_ticks(wl))
        self._artists: list[Any] = []
        self.names = short_names(build.layer_names, 30, modules=build.layer_modules)
        self.legend_anchor = (0.69, 0.91)  # figure fraction; ``_fit`` moves it when the figure grows

    def paint(self, m: int) -> Figure:
        """The picture of macro ``m``: cells by owning layer, segment/layer boundaries, legend."""
        for artist in self._artists:
            artist.remove()
        own = self.own
        key = own.shade_grid(slice(m, m + 1))[0].astype(np.intp) + 1
        self.image.set_data(hatched(key, self.plain, self.dark, self.patterns, self.masks))
        self.ax.set_title(f"{self.build.name}: macro {m} — {float(own.usage()[m]):.2%} of "
                          f"{own.wordlines}×{own.shape[1]} cells used", fontsize=10)
        labels = _macro_labels(self.build, own, m, self.names)
        self._fit(labels)
        self._artists = [a for a in (_boundaries(self.ax, own, m), _macro_legend(self.fig, own, m, labels,
                                                                                self.legend_anchor)) if a]
        return self.fig

    def _fit(self, labels: list[str]) -> None:
        """Grow the figure (10 × 6.4 in at least) so the legend's lines and widest label fit:
        the cells keep their 6 × 5.25 in box at the top left, the legend starts 6.9 in right."""
        lines = sum(label.count("\n") + 1 for label in labels) + 2
        chars = max((len(line) for label in labels for line in label.split("\n")), default=0)
        width, height = max(10.0, 7.3 + CHAR * chars + 0.4), max(6.4, 0.9 + LEGEND_LINE * lines)
        self.fig.set_size_inches(width, height)
        self.ax.set_position((0.7 / width, (height - 5.824) / height, 6.0 / width, 5.248 / height))
        self.legend_anchor = (6.9 / width, (height - 0.576) / height)


def macro_figure(build: BuildDir, own: Owners, m: int) -> Figure:
    """The picture of macro ``m`` alone (``MacroPainter`` draws many faster)."""
    return MacroPainter(build, own).paint(m)


def _ticks(size: int) -> tuple[np.ndarray, list[str]]:
    """Tick positions on cell edges every ``size/8`` lines, labelled with the line index."""
    labels = np.arange(0, size + 1, max(size // 8, 1))
    return labels - 0.5, [str(t) for t in labels]


def _boundaries(ax: Axes, own: Owners, m: int) -> Any:
    """Vertical lines where the (layer, segment) of neighbouring bitlines changes."""
    key = np.where(own.used[m], own.layer[m] * (1 << 20) + own.segment[m], -1)
    change = np.flatnonzero((key[1:] != key[:-1]) & ((key[1:] >= 0) | (key[:-1] >= 0))) + 1
    if change.size == 0:
        return None
    top = np.maximum(own.stop[m][change - 1], own.stop[m][change])
    layer_change = own.layer[m][change - 1] != own.layer[m][change]
    return ax.vlines(change - 0.5, -0.5, top - 0.5, colors="#202020", linewidths=np.where(layer_change, 1.6, 0.5))


def _macro_labels(build: BuildDir, own: Owners, m: int, names: list[str]) -> list[str]:
    """Legend labels of macro ``m``: each layer on it with its bitlines and segments, then idle."""
    used = own.used[m]
    labels = []
    for index in np.unique(own.layer[m][used]).tolist():
        mine = used & (own.layer[m] == index)
        segments = np.unique(own.segment[m][mine]).size
        label = f"{index}: {names[index]} — {int(mine.sum()):,} BL, {segments} seg."
        if index in build.slicing_notes:
            label += f"\n    {build.slicing_notes[index]} (adjacent digit BLs)"
        labels.append(label)
    return [*labels, f"idle — {int((~used).sum()):,} BL"]


def _macro_legend(fig: Figure, own: Owners, m: int, labels: list[str], anchor: tuple[float, float]) -> Any:
    from matplotlib.patches import Patch

    present = np.unique(own.layer[m][own.used[m]]).tolist()
    handles = [Patch(facecolor=layer_color(i), edgecolor=darken(layer_color(i), DARKEN), hatch=_HATCH[pattern(i)],
                     label=label) for i, label in zip(present, labels, strict=False)]
    handles.append(Patch(facecolor=IDLE, edgecolor="#202020", label=labels[-1]))
    return fig.legend(handles=handles, loc="upper left", bbox_to_anchor=anchor, fontsize=8,
                      title="layer (lighter = odd segment)", title_fontsize=8, frameon=False)


def mosaic_shape(macros: int) -> tuple[int, int]:
    """(rows, columns) of the overview grid: one row up to 6 macros, else a little wider than tall."""
    cols = max(1, macros) if macros <= 6 else int(np.ceil(np.sqrt(macros * 1.6)))
    return max(1, -(-macros // cols)), min(cols, max(macros, 1))


@dataclass(frozen=True)
class Mosaic:
    """All macros tiled into one code image (0 gap, 1 idle, 2+ layer shades): tile ``m`` at
    row ``m // cols``, column ``m mod cols``, top-left pixel ``(r·pitch_y, c·pitch_x)``,
    ``tile_h × tile_w`` pixels (every ``step``-th wordline and bitline)."""

    image: np.ndarray
    cols: int
    pitch_y: int
    pitch_x: int
    tile_h: int
    tile_w: int
    step: int


def mosaic(own: Owners) -> Mosaic:
    m, bl = own.shape
    rows, cols = mosaic_shape(m)
    step = max(1, -(-cols * max(bl, own.wordlines) // MOSAIC_PIXELS))
    tiles = own.shade_grid(step=step) + 2
    th, tw = tiles.shape[1], tiles.shape[2]
    gap = max(1, max(th, tw) // 12)
    padded = np.zeros((rows * cols, th + gap, tw + gap), dtype=np.int32)
    padded[:m, :th, :tw] = tiles
    image = padded.reshape(rows, cols, th + gap, tw + gap).transpose(0, 2, 1, 3)
    image = image.reshape(rows * (th + gap), cols * (tw + gap))[:-gap, :-gap]
    return Mosaic(image, cols, th + gap, tw + gap, th, tw, step)


def mosaic_rgb(tiles: Mosaic, layers: int) -> np.ndarray:
    """``(H, W, 3)`` colours of the mosaic codes (0 gap, 1 idle, 2 + shade), hatched past 20 layers."""
    plain, dark, patterns = shade_luts(layers, (GAP, IDLE))
    h, w = tiles.image.shape
    return hatched(tiles.image, rgb_of(plain), rgb_of(dark), patterns, hatch_masks(h, w))


def usage_label(m: int, usage: float) -> str:
    """``m: u%`` with one decimal below 10 % (a 0.4 % macro is not '0%')."""
    return f"{m}: {usage:.1%}" if usage < 0.1 else f"{m}: {usage:.0%}"


LEGEND_LINE = 0.19  # inches per legend row at 8 pt (matplotlib: 8 pt text + 0.5 em spacing, rounded up)
CHAR = 0.075  # inches per character of 8 pt DejaVu Sans, rounded up


@dataclass(frozen=True)
class OverviewLayout:
    """Sizes in inches: the mosaic ``width × tall``, the figure ``fig_w × fig_h``, and the
    legend's columns; ``below`` when the legend sits under the bar chart (it did not fit beside)."""

    width: float
    tall: float
    fig_w: float
    fig_h: float
    legend_h: float
    columns: int
    below: bool


def overview_layout(tiles: Mosaic, labels: list[str]) -> OverviewLayout:
    """Mosaic tiles at least 0.62 in wide (7 pt labels stay legible up to 400 macros); the
    legend beside the pictures when its rows fit their height, else under them in as many
    columns as the width holds, the figure growing by its rows: never clipped."""
    width = max(8.4, 0.62 * tiles.cols)
    # at most 3× as tall as wide: a macro of 65,536 wordlines × 256 bitlines would ask for a 200,000-pixel figure
    tall = min(width * tiles.image.shape[0] / max(tiles.image.shape[1], 1), 3 * width)
    body = tall + OVERVIEW_BARS + 4 * OVERVIEW_PAD
    column = CHAR * max((len(t) for t in labels), default=4) + 0.5
    if (len(labels) + 2) * LEGEND_LINE <= body:
        return OverviewLayout(width, tall, width + 0.9 + column, body, 0.0, 1, False)
    fig_w = max(width + 0.9, 12.0)
    columns = max(1, int((fig_w - 0.4) // column))
    legend_h = (-(-len(labels) // columns) + 2) * LEGEND_LINE
    return OverviewLayout(width, tall, fig_w, body + legend_h, legend_h, columns, True)


OVERVIEW_BARS, OVERVIEW_PAD = 1.6, 0.5  # inches: bar chart height, margins


def overview_figure(build: BuildDir, own: Owners) -> Figure:
    """All macros with their usage, and each macro's usage split by layer (Figs. 12–13)."""
    macros = own.shape[0]
    tiles = mosaic(own)
    labels = _legend_labels(build)
    box = overview_layout(tiles, labels)
    bars, pad, h, w = OVERVIEW_BARS, OVERVIEW_PAD, box.fig_h, box.fig_w
    fig = _new_figure(w, h)
    top = fig.add_axes((0.4 / w, (box.legend_h + bars + 2.5 * pad) / h, box.width / w, box.tall / h))
    top.imshow(mosaic_rgb(tiles, len(build.layer_names)), interpolation="nearest")
    top.set_axis_off()
    _tile_frames(top, tiles, macros, own.usage())
    total = float(own.cells_used().sum()) / (macros * own.wordlines * own.shape[1]) if macros else 0.0
    top.set_title(f"{build.name}: {macros} macros of {own.wordlines}×{own.shape[1]} cells, "
                  f"{total:.2%} used (tile label: macro: usage)", fontsize=10)
    _usage_bars(fig.add_axes((1.0 / w, (box.legend_h + pad) / h, (box.width - 0.6) / w, bars / h)), build, own)
    _layer_legend(fig, build, labels, box)
    return fig


def _tile_frames(ax: Axes, tiles: Mosaic, macros: int, usage: np.ndarray) -> None:
    """An outline and a ``macro: usage`` label on every tile, in its bottom-right corner (the
    top-left one always holds weights: columns start at wordline 0 and fill bitlines in order)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    r, c = np.divmod(np.arange(macros), tiles.cols)
    y, x = r * tiles.pitch_y - 0.5, c * tiles.pitch_x - 0.5
    frames = [Rectangle((float(a), float(b)), tiles.tile_w, tiles.tile_h) for a, b in zip(x, y, strict=True)]
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="#505050", linewidth=0.6, clip_on=False))
    size = 8 if tiles.cols <= 8 else 7
    for m in range(macros):
        ax.text(x[m] + tiles.tile_w - 1, y[m] + tiles.tile_h - 1, usage_label(m, float(usage[m])), fontsize=size,
                va="bottom", ha="right", bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "linewidth": 0})


def _usage_bars(ax: Axes, build: BuildDir, own: Owners) -> None:
    from matplotlib.collections import PolyCollection
    from matplotlib.ticker import MaxNLocator

    names = build.layer_names
    share = own.cells_by_layer(len(names)) / float(own.wordlines * own.shape[1])
    top = np.cumsum(share, axis=1)
    m, layer = np.nonzero(share)  # one bar segment per (macro, layer) with cells: [m−½, m+½] × [top − share, top]
    lo, hi = top[m, layer] - share[m, layer], top[m, layer]
    verts = np.stack([np.stack([m - 0.5, lo], 1), np.stack([m + 0.5, lo], 1),
                      np.stack([m + 0.5, hi], 1), np.stack([m - 0.5, hi], 1)], axis=1)
    colors = np.asarray([layer_color(i) for i in range(len(names))])
    hatch = np.asarray([pattern(i) for i in range(len(names))], dtype=np.intp)[layer]
    for kind in np.unique(hatch).tolist():  # one collection per hatch pattern
        mine = hatch == kind
        ax.add_collection(PolyCollection(list(verts[mine]), facecolors=colors[layer[mine]].tolist(), linewidths=0,
                                         hatch=_HATCH[kind], edgecolors=[darken(c, DARKEN) for c in
                                                                         colors[layer[mine]].tolist()]))
    ax.set_xlim(-0.5, max(own.shape[0], 1) - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1 macro: tick 0 only
    ax.set_ylim(0, 1)
    ax.set_xlabel("macro")
    ax.set_ylabel("usage")
    ax.yaxis.set_major_formatter("{x:.0%}")


def _legend_labels(build: BuildDir) -> list[str]:
    """``ℓ: short name (slicing)`` per layer, then ``idle``."""
    notes = build.slicing_notes
    names = short_names(build.layer_names, 28, modules=build.layer_modules)
    return [f"{i}: {name}" + (f" ({notes[i]})" if i in notes else "") for i, name in enumerate(names)] + ["idle"]


def _layer_legend(fig: Figure, build: BuildDir, labels: list[str], box: OverviewLayout) -> Any:
    """Every layer's colour (and hatch, past 20 layers) with its name, beside or under the pictures."""
    from matplotlib.patches import Patch

    layers = len(build.layer_names)
    handles = [Patch(facecolor=layer_color(i), edgecolor=darken(layer_color(i), DARKEN), hatch=_HATCH[pattern(i)],
                     label=label, linewidth=0.8) for i, label in enumerate(labels[:layers])]
    handles.append(Patch(facecolor=IDLE, edgecolor="#202020", label=labels[-1]))
    if box.below:
        anchor = (0.2 / box.fig_w, (box.legend_h - 0.1) / box.fig_h)
    else:
        anchor = ((box.width + 0.7) / box.fig_w, 1.0 - OVERVIEW_PAD / box.fig_h)
    return fig.legend(handles=handles, loc="upper left", bbox_to_anchor=anchor, fontsize=8, ncols=box.columns,
                      frameon=False, title="layer (lighter = odd segment" + (", hatch = colour cycle)" if
                                                                            layers > 20 else ")"),
                      title_fontsize=8, borderaxespad=0.0)


_HATCH = (None, "////", "\\\\", "xxxx")


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG or SVG (by suffix), deterministically."""
    matplotlib = require_matplotlib()
    fmt = path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"cannot write '{path.name}': maps are {' or '.join(FORMATS)}")
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
    refuse_special_output(path)
    with matplotlib.rc_context({"svg.hashsalt": "cimc", "svg.fonttype": "none"}):
        fig.savefig(path, format=fmt, metadata=metadata)
    return path


def write_maps(build: BuildDir, out_dir: str | Path, formats: Iterable[str] = ("png",),
               macros: Iterable[int] | None = None, overview: bool = True,
               progress: Progress | None = None, jobs: int = 1) -> list[Path]:
    """Write ``macro_NNNN.<fmt>`` for each macro (default: all) and ``overview.<fmt>`` (and, for a
    build with a weight pool, ``pool.png`` and ``pool_index_NNNN.png``: ``cimc.views.pool_map``),
    counting the macros drawn on ``progress`` (``cimc.progress``); ``jobs > 1`` draws the macros in
    that many forked processes (the same files, in the same order)."""
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"unknown map format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    require_matplotlib()
    own = build.owners
    chosen = list(range(own.shape[0])) if macros is None else _checked(macros, own.shape[0])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = MacroWriter(build, own, formats, out)
    progress = progress or Progress(enabled=False)
    progress.phase(f"drawing macro maps ({', '.join(formats)})", total=len(chosen))
    written = _write_macros(writer, chosen, jobs, progress.advance)
    if overview:
        progress.phase("drawing the overview")
        fig = overview_figure(build, own)
        written += [save(fig, out / f"overview.{fmt}") for fmt in formats]
    if "png" in formats and build.has(POOL_FILE):
        progress.phase("drawing the weight pool")
        written += write_pool_maps(build, out)
    log.info("wrote %d map files to %s", len(written), out)
    return written


class MacroWriter:
    """Writes one macro's files; its painters are made on first use (in the process that draws)."""

    def __init__(self, build: BuildDir, own: Owners, formats: tuple[str, ...], out: Path) -> None:
        self.build, self.own, self.formats, self.out = build, own, formats, out
        self._raster: MacroRaster | None = None
        self._painter: MacroPainter | None = None

    def __call__(self, m: int) -> list[Path]:
        written = []
        if "png" in self.formats:
            self._raster = self._raster or MacroRaster(self.build, self.own)
            written.append(self._raster.png(m, self.out / f"macro_{m:04d}.png"))
        if "svg" in self.formats:
            self._painter = self._painter or MacroPainter(self.build, self.own)
            written.append(save(self._painter.paint(m), self.out / f"macro_{m:04d}.svg"))
        return written


_WRITER: MacroWriter | None = None  # the writer forked workers inherit
CHUNK = 8  # macros per task of a drawing process


def _write_chunk(chunk: list[int]) -> list[Path]:
    assert _WRITER is not None, "set before the workers fork"
    return [path for m in chunk for path in _WRITER(m)]


def _write_macros(writer: MacroWriter, chosen: list[int], jobs: int, advance: Callable[[], None]) -> list[Path]:
    """Every chosen macro's files, in order: here, or in ``jobs`` forked processes taking chunks
    of ``CHUNK`` macros; ``advance()`` after each macro (in this process)."""
    import multiprocessing

    global _WRITER
    if jobs <= 1 or len(chosen) <= CHUNK or "fork" not in multiprocessing.get_all_start_methods():
        written = []
        for m in chosen:
            written += writer(m)
            advance()
        return written
    from concurrent.futures import ProcessPoolExecutor

    chunks = [chosen[i:i + CHUNK] for i in range(0, len(chosen), CHUNK)]
    _WRITER = writer
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_write_chunk, chunk) for chunk in chunks]
            results = []
            for chunk, future in zip(chunks, futures, strict=True):
                results.append(future.result())
                for _ in chunk:
                    advance()
    finally:
        _WRITER = None
    return [path for paths in results for path in paths]


def default_jobs(macros: int) -> int:
    """Processes for ``macros`` maps: 1 below 64 macros, else the usable CPUs, at most 4."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if macros < 64 else max(1, min(4, cpus))


def _checked(macros: Iterable[int], count: int) -> list[int]:
    chosen = sorted(set(macros))
    bad = [m for m in chosen if not 0 <= m < count]
    if bad:
        raise UsageError(f"macro {bad[0]} does not exist: the build has macros 0…{count - 1}")
    return chosen
