"""A palette picture drawn with numpy and written as an 8-bit PNG: the pixel canvas of the maps.

A ``Canvas`` holds an ``(H, W)`` uint8 array of palette indices and an ``(H, W)`` ink image
(coverage 0–255 of the text drawn, FreeType-antialiased by Pillow), composited only inside the
boxes where text was drawn; ``copy`` flattens the text into the colours, so the static parts of
a picture are composited once. Palette indices
``0 … 31`` are a grey ramp from black to white; colours get the next free index when first used.
``png`` writes ``index`` where no text is, and the ramp's ``⌊(255 − ink)·31 / 255⌉`` where text
is (text is black on a white ground), so one image of ≤ 256 colours is encoded, with no colour
quantisation and at a fraction of an RGBA image's cost. Fonts are DejaVu Sans from matplotlib's
data folder (the ``[plot]`` extra), else Pillow's default font.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

GREYS = 32
WHITE = GREYS - 1
BLACK = 0
_INK_GREY = (((255 - np.arange(256)) * (GREYS - 1) + 127) // 255).astype(np.uint8)  # ink coverage → ramp index


@functools.cache
def font(size: int) -> Any:
    """DejaVu Sans of ``size`` pixels (Pillow's default font when matplotlib's is missing)."""
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def text_width(text: str, size: int) -> int:
    """Width in pixels of ``text`` at ``size``."""
    return int(np.ceil(font(size).getlength(text)))


class Canvas:
    """``height × width`` pixels, white, with a palette of at most 256 colours."""

    def __init__(self, height: int, width: int) -> None:
        from PIL import Image, ImageDraw

        self.index = np.full((height, width), WHITE, dtype=np.uint8)
        self.ink = Image.new("L", (width, height), 0)
        self._draw = ImageDraw.Draw(self.ink)
        ramp = np.linspace(0, 255, GREYS).round().astype(np.uint8)
        self.palette: list[tuple[int, int, int]] = [(int(g), int(g), int(g)) for g in ramp]
        self._codes: dict[str, int] = {}
        self._boxes: list[tuple[int, int, int, int]] = []  # where text was drawn: x0, y0, x1, y1

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.index.shape[0]), int(self.index.shape[1]))

    def copy(self, height: int | None = None) -> Canvas:
        """A copy with its text flattened into the colours, extended with white rows to ``height``."""
        h, w = self.shape
        out = Canvas(max(h, height or h), w)
        out.index[:h] = self.pixels()
        out.palette, out._codes = list(self.palette), dict(self._codes)
        return out

    def color(self, hex_color: str) -> int:
        """Palette index of ``#rrggbb`` (added on first use)."""
        code = self._codes.get(hex_color)
        if code is None:
            if len(self.palette) >= 256:
                raise ValueError("a canvas holds at most 256 colours")
            code = len(self.palette)
            self.palette.append(tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5)))  # type: ignore[arg-type]
            self._codes[hex_color] = code
        return code

    def fill(self, x0: int, y0: int, x1: int, y1: int, code: int) -> None:
        """Pixels ``[y0, y1) × [x0, x1)`` to palette index ``code`` (clipped to the canvas)."""
        self.index[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = code

    def frame(self, x0: int, y0: int, x1: int, y1: int, code: int = BLACK) -> None:
        """A one-pixel outline just outside ``[x0, x1) × [y0, y1)``."""
        self.fill(x0 - 1, y0 - 1, x1 + 1, y0, code)
        self.fill(x0 - 1, y1, x1 + 1, y1 + 1, code)
        self.fill(x0 - 1, y0, x0, y1, code)
        self.fill(x1, y0, x1 + 1, y1, code)

    def text(self, xy: tuple[float, float], text: str, size: int = 11, anchor: str = "la") -> None:
        """Black ``text`` at ``xy`` (Pillow anchors: ``la`` left/ascender, ``mt`` middle/top, ``rm``…)."""
        self._draw.text(xy, text, fill=255, font=font(size), anchor=anchor)
        x0, y0, x1, y1 = self._draw.textbbox(xy, text, font=font(size), anchor=anchor)
        self._boxes.append((int(x0), int(y0), int(np.ceil(x1)) + 1, int(np.ceil(y1)) + 1))

    def vertical_text(self, center: tuple[int, int], text: str, size: int = 11) -> None:
        """Black ``text`` turned 90° counter-clockwise, centred on ``center``."""
        from PIL import Image, ImageDraw

        w = text_width(text, size) + 2
        strip = Image.new("L", (w, size + 4), 0)
        ImageDraw.Draw(strip).text((1, 0), text, fill=255, font=font(size))
        turned = strip.rotate(90, expand=True)
        x, y = center[0] - turned.width // 2, center[1] - turned.height // 2
        self.ink.paste(turned, (x, y))
        self._boxes.append((x, y, x + turned.width, y + turned.height))

    def pixels(self) -> np.ndarray:
        """Final palette indices: text ink over the drawn colours (only where text was drawn)."""
        out = self.index.copy()
        ink = np.asarray(self.ink)
        h, w = self.shape
        for x0, y0, x1, y1 in self._boxes:
            ys, xs = slice(max(y0, 0), min(y1, h)), slice(max(x0, 0), min(x1, w))
            region = ink[ys, xs]
            out[ys, xs] = np.where(region > 0, _INK_GREY[region], out[ys, xs])
        return out

    def rgb(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 colours of ``pixels``."""
        return np.asarray(self.palette, dtype=np.uint8)[self.pixels()]

    def png(self, path: Path) -> Path:
        """Write an 8-bit palette PNG (fast zlib level); a FIFO or device at ``path`` is refused."""
        from PIL import Image

        from cimc.untrusted import refuse_special_output

        refuse_special_output(Path(path))
        image = Image.fromarray(self.pixels())  # mode L; a palette makes it P
        image.putpalette([c for rgb in self.palette for c in rgb])
        image.save(path, format="png", compress_level=1)
        return path
