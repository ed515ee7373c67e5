"""One macro's placement map as a PNG drawn with numpy: the fast path of ``cimc maps``.

The picture matches the matplotlib figure of ``placement_map.macro_figure``: wordlines down
(wordline 0 on top), bitlines across, each cell in its layer's colour (odd segments lighter,
idle white), a thin line between segments and a thick one between layers, axis ticks every
``size/8`` lines, a title with the macro's usage and a legend of the layers on the macro with
their bitlines and segments (and, for a bit-sliced layer, its slicing). Each wordline × bitline
cell is an ``sy × sx`` block of pixels (``s = ⌊512 / lines⌋``, or lines sampled evenly past
512), so cell ``(w, b)`` covers pixels ``[w·sy, (w+1)·sy) × [b·sx, (b+1)·sx)`` of the map box.

Colours repeat every 20 layers, so cells (and legend swatches) of layer ``ℓ`` carry the hatch
``palette.pattern(ℓ)``, and when a build has more than 20 layers every run of a layer wide
enough for it is labelled with the layer index. The legend is as tall as it needs to be: the
picture grows downward, it never clips an entry.

The axes, ticks and labels are drawn once per build; per macro only the cells, lines, title
and legend are drawn onto a copy (``MacroRaster.png``): a fraction of matplotlib's cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cimc.build.cell_map import Owners
from cimc.build.reader import BuildDir
from cimc.views.names import short_names
from cimc.views.palette import DARKEN, IDLE, colors_repeat, darken, layer_color, pattern
from cimc.views.raster import BLACK, Canvas, text_width

BOX = 512  # pixels of the map box's longer side at most
LEFT, TOP = 72, 40  # map box origin (room for y labels and the title)
LEGEND_WIDTH = 400
LINE = 16  # legend line pitch
HATCH = 6  # hatch period in pixels
DARK = "#202020"
NAME_WIDTH = 30


def _scale(lines: int) -> int:
    """Pixels for ``lines`` wordlines or bitlines: a whole number per line up to ``BOX``."""
    return lines * max(1, BOX // lines) if lines <= BOX else BOX


def _ticks(size: int) -> np.ndarray:
    """Tick lines: every ``size/8`` (at least 1), from 0 to ``size``."""
    return np.arange(0, size + 1, max(size // 8, 1))


def hatch_masks(height: int, width: int) -> np.ndarray:
    """``(H, W)`` uint8: bit 0 where ``/`` lines pass (``(x + y) mod 6 = 0``), bit 1 where ``\\``
    lines pass (``(x − y) mod 6 = 0``); pattern ``p`` of ``palette.PATTERNS`` draws where ``mask & p``."""
    y, x = np.ogrid[0:height, 0:width]
    return (((x + y) % HATCH == 0) | (((x - y) % HATCH == 0) << 1)).astype(np.uint8)


def hatched(key: np.ndarray, plain: np.ndarray, dark: np.ndarray, patterns: np.ndarray,
            masks: np.ndarray) -> np.ndarray:
    """``plain[key]``, or ``dark[key]`` on the pixels where pattern ``patterns[key]`` draws."""
    if not patterns.any():
        return plain[key]
    line = (masks & patterns.astype(np.uint8)[key]) != 0
    return np.where(line[..., None] if plain.ndim > 1 else line, dark[key], plain[key])


def shade_luts(layers: int, first: tuple[str, ...]) -> tuple[list[str], list[str], np.ndarray]:
    """Colour, hatch colour and pattern of codes ``first…`` then the shade codes ``2ℓ + parity``."""
    shades = [layer_color(c // 2, c % 2) for c in range(2 * layers)]
    patterns = [0] * len(first) + [pattern(c // 2) for c in range(2 * layers)]
    return [*first, *shades], [*first, *(darken(c, DARKEN) for c in shades)], np.asarray(patterns, dtype=np.intp)


def rgb_of(colors: list[str]) -> np.ndarray:
    """``(n, 3)`` uint8 of ``#rrggbb`` colours."""
    return np.asarray([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], dtype=np.uint8).reshape(-1, 3)


class MacroRaster:
    """Draws the macros of one build as PNGs; the static parts are drawn once."""

    def __init__(self, build: BuildDir, own: Owners) -> None:
        self.build, self.own = build, own
        self.wl, self.bl = own.wordlines, own.shape[1]
        self.pw, self.ph = _scale(self.bl), _scale(self.wl)
        self.cols = (np.arange(self.pw) * self.bl) // self.pw  # bitline under each pixel column
        self.rows = (np.arange(self.ph) * self.wl) // self.ph  # wordline under each pixel row
        self.base_height = TOP + self.ph + 48
        self.names = short_names(build.layer_names, NAME_WIDTH, modules=build.layer_modules)
        self.width = LEFT + self.pw + 28 + max(LEGEND_WIDTH, self._widest_line() + 30)
        self.label_layers = colors_repeat(len(build.layer_names))
        self.static = self._static()
        self._luts()
        self.masks = hatch_masks(self.ph, self.pw)
        self.swatch_masks = hatch_masks(12, 12)

    def _widest_line(self) -> int:
        """Pixels of the longest legend line any macro can have (so none is clipped)."""
        most = f"{self.bl:,}"
        texts = [f"{i}: {name} — {most} BL, {most} seg." for i, name in enumerate(self.names)]
        texts += [f"      {note} (adjacent digit BLs)" for note in self.build.slicing_notes.values()]
        return max((text_width(t, 11) for t in texts), default=0)

    def _x(self, bitline: np.ndarray | int) -> np.ndarray:
        """Pixel column of the left edge of ``bitline`` (``bl`` → right edge of the box)."""
        return LEFT + (np.asarray(bitline) * self.pw) // self.bl

    def _y(self, wordline: np.ndarray | int) -> np.ndarray:
        return TOP + (np.asarray(wordline) * self.ph) // self.wl

    def _static(self) -> Canvas:
        """White canvas with the frame, the ticks and their labels, and the axis names."""
        canvas = Canvas(self.base_height, self.width)
        right, bottom = LEFT + self.pw, TOP + self.ph
        canvas.frame(LEFT, TOP, right, bottom)
        for b, x in zip(_ticks(self.bl).tolist(), self._x(_ticks(self.bl)).tolist(), strict=True):
            canvas.fill(x, bottom + 1, x + 1, bottom + 5, BLACK)
            canvas.text((x, bottom + 7), str(b), 10, "mt")
        for w, y in zip(_ticks(self.wl).tolist(), self._y(_ticks(self.wl)).tolist(), strict=True):
            canvas.fill(LEFT - 5, y, LEFT - 1, y + 1, BLACK)
            canvas.text((LEFT - 8, y), str(w), 10, "rm")
        canvas.text((LEFT + self.pw // 2, bottom + 24), "bitline", 11, "mt")
        canvas.vertical_text((14, TOP + self.ph // 2), "wordline", 11)
        return canvas

    def _luts(self) -> None:
        """Palette index, hatch colour and pattern of every shade code ``2ℓ + parity`` (+1: idle at 0)."""
        plain, dark, self.lut_pattern = shade_luts(len(self.build.layer_names), (IDLE,))
        canvas = self.static
        self.lut = np.asarray([canvas.color(c) for c in plain], dtype=np.uint8)
        self.lut_dark = np.asarray([canvas.color(c) for c in dark], dtype=np.uint8)
        self.dark = canvas.color(DARK)

    def paint_codes(self, codes: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Palette indices of a pixel grid of shade codes (``-1`` idle), hatched by pattern."""
        return hatched(codes.astype(np.intp) + 1, self.lut, self.lut_dark, self.lut_pattern, masks)

    def cells(self, m: int) -> np.ndarray:
        """``(ph, pw)`` palette indices of macro ``m``'s cells, with segment and layer lines."""
        grid = self.own.shade_grid(slice(m, m + 1))[0]
        if self.lut_pattern.any():  # hatches are drawn per pixel
            pixels = self.paint_codes(grid[self.rows][:, self.cols], self.masks)
        else:  # plain colours: look up each cell once, then enlarge
            pixels = self.lut[grid.astype(np.intp) + 1][self.rows][:, self.cols]
        tops = self._line_tops(m)
        lines = np.flatnonzero(tops)
        rows = np.arange(self.ph)[:, None]
        pixels[:, lines] = np.where(rows < tops[lines][None, :], self.dark, pixels[:, lines])
        return pixels

    def _line_tops(self, m: int) -> np.ndarray:
        """Per pixel column, how far down a boundary line reaches (0: none): 1 pixel left of a
        segment change, 2 pixels across a layer change, down to the longer of the two spans."""
        own = self.own
        key = np.where(own.used[m], own.layer[m] * (1 << 20) + own.segment[m], -1)
        change = np.flatnonzero((key[1:] != key[:-1]) & ((key[1:] >= 0) | (key[:-1] >= 0))) + 1
        tops = np.zeros(self.pw, dtype=np.int64)
        if change.size:
            reach = (np.maximum(own.stop[m][change - 1], own.stop[m][change]) * self.ph) // self.wl
            x = (change * self.pw) // self.bl
            np.maximum.at(tops, x - 1, reach)
            thick = own.layer[m][change - 1] != own.layer[m][change]
            np.maximum.at(tops, np.minimum(x[thick], self.pw - 1), reach[thick])
        return tops

    def legend(self, m: int) -> list[tuple[int, str]]:
        """``(shade code or −1 idle, text)`` per legend line of macro ``m``: its layers, then idle."""
        own, notes = self.own, self.build.slicing_notes
        used = own.used[m]
        lines: list[tuple[int, str]] = []
        for index in np.unique(own.layer[m][used]).tolist():
            mine = used & (own.layer[m] == index)
            segments = np.unique(own.segment[m][mine]).size
            lines.append((2 * index, f"{index}: {self.names[index]} — {int(mine.sum()):,} BL, {segments} seg."))
            if index in notes:
                lines.append((-2, f"{notes[index]} (adjacent digit BLs)"))
        lines.append((-1, f"idle — {int((~used).sum()):,} BL"))
        return lines

    def draw(self, m: int) -> Canvas:
        """The canvas of macro ``m``."""
        lines = self.legend(m)
        legend_x, legend_y = LEFT + self.pw + 28, TOP + 20
        canvas = self.static.copy(height=legend_y + LINE * len(lines) + 8)
        canvas.index[TOP:TOP + self.ph, LEFT:LEFT + self.pw] = self.cells(m)
        if self.label_layers:
            self._label_runs(canvas, m)
        own = self.own
        canvas.text((LEFT, 12), f"{self.build.name}: macro {m} — {float(own.usage()[m]):.2%} of "
                                f"{own.wordlines}×{own.shape[1]} cells used", 13)
        canvas.text((legend_x, TOP), "layer (lighter = odd segment)", 11)
        for i, (code, text) in enumerate(lines):
            y = legend_y + i * LINE
            if code >= -1:
                swatch = self.paint_codes(np.full((12, 12), code), self.swatch_masks)
                canvas.index[y:y + 12, legend_x:legend_x + 12] = swatch
                canvas.frame(legend_x, y, legend_x + 12, y + 12, self.dark)
            canvas.text((legend_x + (18 if code >= -1 else 30), y + 6), text, 11, "lm")
        return canvas

    def _label_runs(self, canvas: Canvas, m: int) -> None:
        """The layer index on a white tag at the top of each run of one layer wide enough for it."""
        layer = self.own.layer[m]
        edges = np.flatnonzero(np.diff(layer)) + 1
        starts, stops = np.r_[0, edges], np.r_[edges, layer.size]
        for b0, b1 in zip(starts.tolist(), stops.tolist(), strict=True):
            index = int(layer[b0])
            text = str(index)
            x0, x1 = int(self._x(b0)), int(self._x(b1))
            width = text_width(text, 10) + 4
            if index < 0 or x1 - x0 < width + 2:
                continue
            mid = (x0 + x1) // 2
            canvas.fill(mid - width // 2, TOP + 1, mid + width - width // 2, TOP + 14, canvas.color(IDLE))
            canvas.text((mid, TOP + 8), text, 10, "mm")

    def png(self, m: int, path: Path) -> Path:
        """Write macro ``m`` as an 8-bit palette PNG."""
        return self.draw(m).png(path)
