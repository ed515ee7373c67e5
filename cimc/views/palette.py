"""Layer colours shared by every view (PNG/SVG maps, HTML report, terminal map).

Layer ``ℓ`` gets Kelly's ``ℓ mod 20``-th colour of maximum contrast; its odd segments use
the same colour mixed with 35 % white, so neighbouring segments of one layer stay apart.
Idle cells are white. The terminal map names layer ``ℓ`` by a key of ``w`` letters, ``ℓ``
written in base 26 with the digits ``A…Z`` (``w = 1`` up to 26 layers, ``AA…ZZ`` up to 676), so
no two layers of a build share a key; upper case for even segments, lower case for odd ones.

Colours repeat every 20 layers, so pictures add a pattern by colour cycle: layer ``ℓ`` is hatched
by ``pattern(ℓ) = ⌊ℓ / 20⌋ mod 4`` (0 solid, 1 ``/``, 2 ``\\``, 3 both), drawn in the layer's colour
mixed with 45 % black; layers 0–79 are then told apart by colour and pattern, and maps also write
the layer index on its cells when a build has more than 20 layers. The HTML report draws the same
hatch as an overlay of 45 % black lines (``hatch_lines``, ``swatch_css``): black at opacity 0.45
over a colour ``c`` is ``darken(c, 0.45)``, the PNG's hatch colour.
"""

from __future__ import annotations

KELLY: tuple[str, ...] = (
    "#0067a5", "#f38400", "#008856", "#be0032", "#875692", "#f3c300", "#882d17", "#8db600",
    "#e68fac", "#604e97", "#f6a600", "#b3446c", "#2b3d26", "#e25822", "#a1caf1", "#848482",
    "#dcd300", "#654522", "#c2b280", "#f99379",
)
IDLE = "#ffffff"
GAP = "#f2f2f2"
SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LIGHTEN = 0.35
DARKEN = 0.45
PATTERNS = ("solid", "/", "\\", "x")


def layer_color(layer: int, segment: int = 0) -> str:
    """Hex colour of ``layer`` (odd ``segment``: lighter)."""
    base = KELLY[layer % len(KELLY)]
    return lighten(base, LIGHTEN) if segment % 2 else base


def lighten(color: str, amount: float) -> str:
    """Mix ``#rrggbb`` with white: ``c + amount·(255 − c)`` per channel."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + amount * (255 - c)):02x}" for c in rgb)


def darken(color: str, amount: float) -> str:
    """Mix ``#rrggbb`` with black: ``(1 − amount)·c`` per channel."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round((1 - amount) * c):02x}" for c in rgb)


def pattern(layer: int) -> int:
    """Hatch of ``layer`` (index into ``PATTERNS``): its colour cycle ``⌊ℓ / 20⌋`` mod 4."""
    return (layer // len(KELLY)) % len(PATTERNS)


def hatch_lines(layer: int) -> tuple[str, ...]:
    """The hatch of ``layer`` as line directions: ``()`` solid, ``("/",)``, ``("\\",)`` or both."""
    return {"/": ("/",), "\\": ("\\",), "x": ("/", "\\")}.get(PATTERNS[pattern(layer)], ())


def swatch_css(layer: int, segment: int = 0) -> str:
    """CSS ``background`` of a swatch of ``layer``: its colour under its hatch lines in black at
    opacity ``DARKEN`` (a ``/`` line is a band of a gradient running at −45°)."""
    angle = {"/": "-45deg", "\\": "45deg"}
    bands = [f"repeating-linear-gradient({angle[d]},rgba(0,0,0,{DARKEN}) 0 1.5px,transparent 1.5px 4px)"
             for d in hatch_lines(layer)]
    return ",".join([*bands, layer_color(layer, segment)])


def colors_repeat(layers: int) -> bool:
    """Whether two of ``layers`` layers share a colour (then maps label the layers on their cells)."""
    return layers > len(KELLY)


def shade_colors(layers: int) -> list[str]:
    """Colour of code ``2·ℓ + (s mod 2)`` at index ``code``, for codes ``0 … 2·layers − 1``."""
    return [layer_color(code // 2, code % 2) for code in range(2 * layers)]


def key_width(layers: int) -> int:
    """Letters per layer key for a build of ``layers`` layers: the least ``w`` with ``26^w ≥ layers``."""
    width = 1
    while len(SYMBOLS) ** width < layers:
        width += 1
    return width


def symbol(layer: int, segment: int = 0, width: int = 1) -> str:
    """Key of ``layer``: its ``width`` base-26 digits in ``A…Z`` (lower case for odd segments)."""
    letters = []
    for _ in range(width):
        layer, digit = divmod(layer, len(SYMBOLS))
        letters.append(SYMBOLS[digit])
    key = "".join(reversed(letters))
    return key.lower() if segment % 2 else key
