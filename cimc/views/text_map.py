"""Compact terminal maps of macros, at most 100 columns wide (rich ``Text``).

A macro's ``BL`` bitlines are grouped ``p = ceil(BL / 64)`` per character and, in the 2-D
map, its ``WL`` wordlines ``q = ceil(WL / 16)`` per row. Each character shows the colour
code (``2·layer + segment mod 2``, see ``palette``) that holds most cells of its block,
as the layer's key (one letter up to 26 layers, two up to 676: ``palette.symbol``) — upper case
for even segments, lower case for odd ones — coloured like the pictures; ``.`` is idle. With
``w``-letter keys a block takes ``w`` characters, so ``p = ceil(BL / (64 / w))``.
The majority is one one-hot count per block (numpy), no loop over cells.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text

from cimc.build.cell_map import Owners
from cimc.views.palette import key_width, layer_color, symbol

CHARS = 64
ROWS = 16
WIDTH = 100


def block_size(size: int, target: int) -> int:
    return max(1, -(-size // target))


def majority(codes: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``(H, W)`` codes (−1 idle) → ``(ceil(H/rows), ceil(W/cols))`` majority code per block;
    a tie or an idle majority over a block that has used cells shows the used code."""
    h, w = codes.shape
    bh, bw = -(-h // rows), -(-w // cols)
    padded = np.full((bh * rows, bw * cols), -1, dtype=np.int64)
    padded[:h, :w] = codes
    blocks = padded.reshape(bh, rows, bw, cols).transpose(0, 2, 1, 3).reshape(bh, bw, rows * cols) + 1
    counts = (blocks[..., None] == np.arange(int(blocks.max(initial=0)) + 1)).sum(axis=2)
    used = counts[..., 1:]
    best = np.where(used.max(axis=-1, initial=0) > 0, used.argmax(axis=-1) + 1 if used.size else 0, 0)
    return best - 1


def _codes(own: Owners) -> np.ndarray:
    return np.where(own.used, 2 * own.layer + (own.segment & 1), -1)


def _width(own: Owners) -> int:
    """Key width for the layers of ``own`` (every CIM layer is placed, so the highest is the last)."""
    return key_width(int(own.layer.max(initial=-1)) + 1)


def _text(codes: np.ndarray, highlight: int | None = None, width: int = 1) -> Text:
    text = Text()
    for code in codes.tolist():
        if code < 0:
            text.append("." * width, style="grey50")
        elif highlight is not None and code // 2 != highlight:
            text.append("·" * width, style="grey50")
        else:
            text.append(symbol(code // 2, code % 2, width), style=f"bold {layer_color(code // 2, code % 2)}")
    return text


def macro_strips(own: Owners, macros: list[int] | None = None, highlight: int | None = None) -> list[Text]:
    """One line per macro: ``  12 │AAAAaaaaBB..│  87.50%`` (owners of its bitlines)."""
    chosen = range(own.shape[0]) if macros is None else macros
    width = _width(own)
    per = block_size(own.shape[1], CHARS // width)
    usage = own.usage()
    lines = []
    for m in chosen:
        strip = majority(_codes(own)[m][None, :], 1, per)[0]
        line = Text(f"{m:>5} │")
        line.append_text(_text(strip, highlight, width))
        line.append(f"│ {usage[m]:7.2%}")
        lines.append(line)
    return lines


def macro_block(own: Owners, m: int, highlight: int | None = None) -> list[Text]:
    """A 2-D map of macro ``m`` (≤ 16 rows × 64 characters) with wordline and bitline scales."""
    key = _width(own)
    per, rows = block_size(own.shape[1], CHARS // key), block_size(own.wordlines, ROWS)
    grid = majority(own.shade_grid(slice(m, m + 1))[0], rows, per)
    width = grid.shape[1] * key
    marks = "".join(f"{b * per:<16}"[:16] for b in range(0, grid.shape[1], 16 // key))[:width]
    lines = [Text(f"{'BL':>5}  {marks}", style="grey50"), Text(f"{'WL':>5} ┌{'─' * width}┐")]
    for r in range(grid.shape[0]):
        line = Text(f"{r * rows:>5} │")
        line.append_text(_text(grid[r], highlight, key))
        lines.append(line + Text("│"))
    lines.append(Text(f"{'':>5} └{'─' * width}┘"))
    lines.append(Text(f"{'':>5}  1 character = {per} bitline(s) × {rows} wordline(s)", style="grey50"))
    return lines


def legend(names: list[str], present: list[int] | None = None) -> list[Text]:
    """``A/a 0 name`` entries wrapped to ``WIDTH`` columns."""
    chosen = range(len(names)) if present is None else present
    width = key_width(len(names))
    lines, line = [], Text("  ")
    for i in chosen:
        keys = f"{symbol(i, 0, width)}/{symbol(i, 1, width)}"
        entry = Text(keys, style=f"bold {layer_color(i)}") + Text(f" {i}:{names[i]}  ")
        if len(line) + len(entry) > WIDTH:
            lines.append(line)
            line = Text("  ")
        line.append_text(entry)
    lines.append(line + Text(".", style="grey50") + Text(" idle"))
    return lines
