"""Placement maps as pictures (PNG / SVG, matplotlib), like the paper's Figs. 3, 12 and 13.

* ``macro_figure``: one macro, wordlines (rows, wordline 0 on top) × bitlines (columns).
  Each cell is coloured by the layer owning it (odd segments a shade lighter), idle cells
  are white, a thin line separates segments and a thick one layers; the legend lists the
  layers on the macro with their segment and bitline counts, and for a bit-sliced layer
  its slicing ("8-bit weights over 2 cells": each output channel is 2 adjacent bitlines).
* ``overview_figure``: every macro as a tile of one mosaic labelled with its usage
  ``cells used / (WL·BL)``, above a stacked bar chart of each macro's usage by layer.

matplotlib is the optional extra ``cimc[plot]``, imported lazily; figures are drawn with
the Agg canvas directly (no pyplot, no GUI, no global backend switch). SVGs carry no date
and a fixed hash salt, so the same build gives the same files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.build.cell_map import Owners
from cimc.build.reader import BuildDir
from cimc.errors import UsageError
from cimc.untrusted import refuse_special_output
from cimc.views.palette import GAP, IDLE, layer_color, shade_colors

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


def _cmap(layers: int, extra: tuple[str, ...]) -> tuple[Any, float, float]:
    from matplotlib.colors import ListedColormap

    colors = [*extra, *shade_colors(layers)]
    return ListedColormap(colors), -0.5, len(colors) - 0.5


class MacroPainter:
    """One figure drawn again for each macro: only the cells, boundaries, title and legend
    change, so a model with hundreds of macros does not rebuild axes and ticks each time."""

    def __init__(self, build: BuildDir, own: Owners) -> None:
        self.build, self.own = build, own
        wl, bl = own.wordlines, own.shape[1]
        self.fig = _new_figure(10.0, 6.4)
        self.ax = self.fig.add_axes((0.07, 0.09, 0.6, 0.82))
        cmap, lo, hi = _cmap(len(build.layer_names), (IDLE,))
        self.image = self.ax.imshow(np.zeros((wl, bl), dtype=np.int32), cmap=cmap, vmin=lo, vmax=hi,
                                    interpolation="nearest", aspect="auto",
                                    extent=(-0.5, bl - 0.5, wl - 0.5, -0.5))
        self.ax.set_xlabel("bitline")
        self.ax.set_ylabel("wordline")
        self.ax.set_xticks(*_ticks(bl))
        self.ax.set_yticks(*_ticks(wl))
        self._artists: list[Any] = []
        self._background: Any = None

    def png(self, m: int, path: Path) -> Path:
        """Write macro ``m`` as PNG by redrawing only what changes between macros (cells,
        boundaries, title, legend, the frame over the cells) onto a saved copy of the static
        parts (axes, ticks, labels): the same pixels as ``save(paint(m), path)`` at a fraction
        of the text rendering, written with fast zlib compression."""
        from PIL import Image

        self.paint(m)
        canvas: Any = self.fig.canvas  # FigureCanvasAgg (``_new_figure``): blitting and the RGBA buffer
        dynamic = [self.image, *self._artists, *self.ax.spines.values(), self.ax.title]
        if self._background is None:
            canvas.draw()  # lays out the title as savefig does; a draw without it would move it
            where = self.ax.title.get_position()
            for artist in dynamic:
                artist.set_visible(False)
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.fig.bbox)
            for artist in dynamic:
                artist.set_visible(True)
            self.ax.title.set_position(where)
        canvas.restore_region(self._background)
        for artist in dynamic:
            self.fig.draw_artist(artist)
        buffer = canvas.buffer_rgba()
        refuse_special_output(Path(path))
        Image.frombuffer("RGBA", (buffer.shape[1], buffer.shape[0]), buffer, "raw", "RGBA", 0, 1).save(
            path, format="png", compress_level=1)
        return path

    def paint(self, m: int) -> Figure:
        """The picture of macro ``m``: cells by owning layer, segment/layer boundaries, legend."""
        for artist in self._artists:
            artist.remove()
        own = self.own
        self.image.set_data(own.shade_grid(slice(m, m + 1))[0] + 1)
        self.ax.set_title(f"{self.build.name}: macro {m} — {float(own.usage()[m]):.2%} of "
                          f"{own.wordlines}×{own.shape[1]} cells used", fontsize=10)
        self._artists = [a for a in (_boundaries(self.ax, own, m), _macro_legend(self.fig, self.build, own, m)) if a]
        return self.fig


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


def _macro_legend(fig: Figure, build: BuildDir, own: Owners, m: int) -> Any:
    from matplotlib.patches import Patch

    names = build.layer_names
    used = own.used[m]
    present = np.unique(own.layer[m][used])
    handles = []
    for index in present.tolist():
        mine = used & (own.layer[m] == index)
        segments = np.unique(own.segment[m][mine]).size
        label = f"{index}: {names[index]} — {int(mine.sum())} BL, {segments} seg."
        if index in build.slicing_notes:
            label += f"\n    {build.slicing_notes[index]} (adjacent digit BLs)"
        handles.append(Patch(facecolor=layer_color(index), edgecolor="#202020", label=label))
    handles.append(Patch(facecolor=IDLE, edgecolor="#202020", label=f"idle — {int((~used).sum())} BL"))
    return fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.69, 0.91), fontsize=8,
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


def usage_label(m: int, usage: float) -> str:
    """``m: u%`` with one decimal below 10 % (a 0.4 % macro is not '0%')."""
    return f"{m}: {usage:.1%}" if usage < 0.1 else f"{m}: {usage:.0%}"


def overview_figure(build: BuildDir, own: Owners) -> Figure:
    """All macros with their usage, and each macro's usage split by layer (Figs. 12–13)."""
    macros = own.shape[0]
    tiles = mosaic(own)
    width, bars, pad = 8.4, 1.6, 0.5  # inches: mosaic width, bar chart height, margins
    # at most 3× as tall as wide: a macro of 65,536 wordlines × 256 bitlines would ask for a 200,000-pixel figure
    tall = min(width * tiles.image.shape[0] / max(tiles.image.shape[1], 1), 3 * width)
    height = tall + bars + 4 * pad
    fig = _new_figure(12.0, height)
    top = fig.add_axes((0.04, (bars + 2.5 * pad) / height, width / 12.0, tall / height))
    cmap, lo, hi = _cmap(len(build.layer_names), (GAP, IDLE))
    top.imshow(tiles.image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    top.set_axis_off()
    _tile_frames(top, tiles, macros, own.usage())
    total = float(own.cells_used().sum()) / (macros * own.wordlines * own.shape[1]) if macros else 0.0
    top.set_title(f"{build.name}: {macros} macros of {own.wordlines}×{own.shape[1]} cells, "
                  f"{total:.2%} used (tile label: macro: usage)", fontsize=10)
    _usage_bars(fig.add_axes((0.06, pad / height, width / 12.0 - 0.02, bars / height)), build, own)
    _layer_legend(fig, build, 1.0 - pad / height)
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
    size = 8 if tiles.cols <= 8 else max(5, 10 - tiles.cols // 4)
    for m in range(macros):
        ax.text(x[m] + tiles.tile_w - 1, y[m] + tiles.tile_h - 1, usage_label(m, float(usage[m])), fontsize=size,
                va="bottom", ha="right", bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "linewidth": 0})


def _usage_bars(ax: Axes, build: BuildDir, own: Owners) -> None:
    from matplotlib.ticker import MaxNLocator

    names = build.layer_names
    share = own.cells_by_layer(len(names)) / float(own.wordlines * own.shape[1])
    x = np.arange(own.shape[0])
    bottom = np.zeros(own.shape[0])
    for index in range(len(names)):
        if share[:, index].any():
            ax.bar(x, share[:, index], bottom=bottom, width=1.0, color=layer_color(index), linewidth=0)
            bottom += share[:, index]
    ax.set_xlim(-0.5, max(own.shape[0], 1) - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, 1)
    ax.set_xlabel("macro")
    ax.set_ylabel("usage")
    ax.yaxis.set_major_formatter("{x:.0%}")


def _layer_legend(fig: Figure, build: BuildDir, top: float) -> None:
    from matplotlib.patches import Patch

    notes = build.slicing_notes
    handles = [Patch(facecolor=layer_color(i), edgecolor="#202020",
                     label=f"{i}: {name}" + (f" ({notes[i]})" if i in notes else ""))
               for i, name in enumerate(build.layer_names)]
    handles.append(Patch(facecolor=IDLE, edgecolor="#202020", label="idle"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.76, top), fontsize=8,
               ncols=1 if len(handles) <= 24 else 2, frameon=False, title="layer (lighter = odd segment)",
               title_fontsize=8)


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
               show_progress: bool = False) -> list[Path]:
    """Write ``macro_NNNN.<fmt>`` for each macro (default: all) and ``overview.<fmt>``, with a
    progress bar on stderr when ``show_progress``."""
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"unknown map format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    require_matplotlib()
    own = build.owners
    chosen = list(range(own.shape[0])) if macros is None else _checked(macros, own.shape[0])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    painter = MacroPainter(build, own)
    with _progress(len(chosen), quiet=not show_progress) as advance:
        for m in chosen:
            if "png" in formats:
                written.append(painter.png(m, out / f"macro_{m:04d}.png"))
            if "svg" in formats:
                written.append(save(painter.paint(m), out / f"macro_{m:04d}.svg"))
            advance()
    if overview:
        fig = overview_figure(build, own)
        written += [save(fig, out / f"overview.{fmt}") for fmt in formats]
    log.info("wrote %d map files to %s", len(written), out)
    return written


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[], None]]:
    """A rich progress bar over ``total`` macros on stderr (nothing when ``quiet``)."""
    if quiet:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("drawing macro maps", total=total)
        yield lambda: bar.advance(task)


def _checked(macros: Iterable[int], count: int) -> list[int]:
    chosen = sorted(set(macros))
    bad = [m for m in chosen if not 0 <= m < count]
    if bad:
        raise UsageError(f"macro {bad[0]} does not exist: the build has macros 0…{count - 1}")
    return chosen
