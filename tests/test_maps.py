"""Placement maps: cell owners against the weights, every picture rendered on zoo models,
pixels of each layer's colour where its cells are, hatches where colours repeat, legends that
fit from 1 to 250 layers and 1 to 400 macros, deterministic SVG, and a clear message without
matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cimc.build.cell_map import describe_cell, owners
from cimc.build.reader import read_build
from cimc.cli.main import main
from cimc.errors import UsageError
from cimc.views.macro_png import LEFT, TOP, MacroRaster
from cimc.views.palette import DARKEN, darken, layer_color, shade_colors
from cimc.views.placement_map import (
    MacroPainter,
    mosaic,
    mosaic_shape,
    overview_figure,
    require_matplotlib,
    write_maps,
)
from cimc.views.raster import Canvas
from tests.map_builds import build, synthetic

ZOO = [("tiny_cnn", {}), ("tiny_residual", {"map_fc": True}), ("digits_cnn", {"placement": "aligned"}),
       ("tiny_cnn", {"macro": "small-64", "tiling": "dense"})]


@pytest.mark.parametrize(("name", "options"), ZOO)
def test_owner_grid_holds_every_weight_once(name: str, options: dict[str, object]) -> None:
    """Cells owned by layer ℓ number rows·Cout, and every non-zero weight is on an owned cell."""
    b = read_build(build(name, **options))
    own = owners(b.layout)
    grid = own.layer_grid()
    counts = np.bincount(grid[grid >= 0], minlength=len(b.layer_names))
    assert counts.tolist() == [x.rows * x.cout for x in b.layout.layers]
    weights = np.stack([b.macro_weights(m) for m in range(own.shape[0])])
    assert not ((weights != 0) & (grid < 0)).any()
    assert np.isclose(own.usage().mean(), b.report["totals"]["macro_usage"])


def test_describe_cell_follows_the_row_order() -> None:
    b = read_build(build("tiny_cnn"))
    own = owners(b.layout)
    layer = b.layout.layers[2]  # 40 input channels in 2 segments, 16 outputs
    m, bl = np.argwhere((own.layer == 2) & (own.segment == 1) & (own.out_channel == 5))[0]
    cell = describe_cell(b.layout, own, int(m), 13, int(bl))
    row = layer.segments[1].row_start + 13
    assert (cell["out_channel"], cell["in_channel"], cell["kernel_pos"]) == (5, row // 9, [(row % 9) // 3, row % 3])
    assert describe_cell(b.layout, own, 0, 255, 255)["idle"]


def _pixels(path: Path) -> set[str]:
    import matplotlib.image

    rgb = (matplotlib.image.imread(path)[..., :3] * 255).round().astype(np.int64)
    packed = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    return {f"#{int(v):06x}" for v in packed}


@pytest.mark.parametrize(("name", "options"), ZOO)
def test_render_every_picture(tmp_path: Path, name: str, options: dict[str, object]) -> None:
    b = read_build(build(name, **options))
    own = owners(b.layout)
    files = write_maps(b, tmp_path, formats=("png", "svg"))
    expected = {f"macro_{m:04d}.{f}" for m in range(own.shape[0]) for f in ("png", "svg")}
    assert {p.name for p in files} == expected | {"overview.png", "overview.svg"}
    for m in range(own.shape[0]):
        colors = _pixels(tmp_path / f"macro_{m:04d}.png")
        segs = {(int(la), int(s)) for la, s in zip(own.layer[m][own.used[m]], own.segment[m][own.used[m]],
                                                    strict=True)}
        assert {layer_color(la, s) for la, s in segs} <= colors, f"macro {m} misses a layer colour"
        assert ("#ffffff" in colors) == True  # noqa: E712  (background; idle cells are white too)
    assert {layer_color(i) for i in range(len(b.layer_names))} <= _pixels(tmp_path / "overview.png")
    svg = (tmp_path / "overview.svg").read_text()
    assert "<svg" in svg and b.layer_names[0] in svg


def test_mosaic_tiles_are_the_macros() -> None:
    b = read_build(build("digits_cnn", placement="aligned"))
    own = owners(b.layout)
    tiles = mosaic(own)
    shades = own.shade_grid(step=tiles.step) + 2
    assert (tiles.tile_h, tiles.tile_w) == shades.shape[1:]
    for m in range(own.shape[0]):
        r, c = divmod(m, mosaic_shape(own.shape[0])[1])
        y, x = r * tiles.pitch_y, c * tiles.pitch_x
        np.testing.assert_array_equal(tiles.image[y: y + tiles.tile_h, x: x + tiles.tile_w], shades[m])
    assert tiles.image.max() < 2 + len(shade_colors(len(b.layer_names)))


def test_overview_labels_give_each_macro_usage() -> None:
    b = read_build(build("digits_cnn", placement="aligned"))
    own = owners(b.layout)
    fig = overview_figure(b, own)
    labels = [t.get_text() for t in fig.axes[0].texts]
    cells = own.wordlines * own.shape[1]
    used = [int(((own.stop - own.start)[m]).sum()) for m in range(own.shape[0])]
    assert used[0] == 9 * 32  # digits_cnn's first conv: 1 channel × 3×3, 32 outputs
    assert labels == [f"{m}: {u / cells:.1%}" if u < 0.1 * cells else f"{m}: {u / cells:.0%}"
                      for m, u in enumerate(used)]
    assert labels[0] == "0: 0.4%"


def test_svg_is_deterministic_and_painter_reuse_is_invisible(tmp_path: Path) -> None:
    b = read_build(build("tiny_residual", map_fc=True))
    write_maps(b, tmp_path / "a", formats=("svg",))
    write_maps(b, tmp_path / "b", formats=("svg",), macros=[0], overview=False)
    for name in ("macro_0000.svg",):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    own = owners(b.layout)
    painter = MacroPainter(b, own)
    painter.paint(0)
    assert painter.fig.axes[0].get_title().startswith(f"{b.name}: macro 0")
    assert len(painter.fig.legends) == 1


def test_missing_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UsageError, match=r"pip install 'cimc\[plot\]'"):
        require_matplotlib()
    result = CliRunner().invoke(main, ["maps", str(build("tiny_cnn")), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "cimc[plot]" in result.output


def test_maps_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["maps", str(build("tiny_cnn")), "-o", str(tmp_path), "--format", "svg",
                                       "--macro", "0"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["macro_0000.svg", "overview.svg"]
    bad = CliRunner().invoke(main, ["maps", str(build("tiny_cnn")), "-o", str(tmp_path), "--macro", "7"])
    assert bad.exit_code == 2 and "macro 7 does not exist" in bad.output


@pytest.mark.torch  # the paper's zoo models are exported with torch
@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), [("vgg9", {}), ("resnet18", {"bitline_budget": 4096})])
def test_render_paper_models(tmp_path: Path, name: str, options: dict[str, object]) -> None:
    b = read_build(build(name, **options))
    files = write_maps(b, tmp_path, formats=("png",))
    assert len(files) == b.num_macros + 1
    assert {layer_color(i) for i in range(len(b.layer_names))} <= _pixels(tmp_path / "overview.png")


def _hex(rgb: np.ndarray) -> np.ndarray:
    return np.asarray([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.reshape(-1, 3).tolist()]).reshape(rgb.shape[:-1])


@pytest.mark.parametrize(("name", "options"), ZOO[1:3])
def test_png_cells_have_their_layer_colour(name: str, options: dict[str, object]) -> None:
    """Cell (w, b) is the ``sy × sx`` pixel block at ``(TOP + w·sy, LEFT + b·sx)``: on every bitline
    away from a boundary line, wordlines ``[start, stop)`` have the owner's colour (odd
    segments lighter), the rest is white."""
    b = read_build(build(name, **options))
    own = owners(b.layout)
    raster = MacroRaster(b, own)
    sy, sx = raster.ph // own.wordlines, raster.pw // own.shape[1]
    for m in range(own.shape[0]):
        rgb = raster.draw(m).rgb()
        key = np.where(own.used[m], own.layer[m] * 1000 + own.segment[m], -1)
        padded = np.r_[key[0], key, key[-1]]
        inner = np.flatnonzero((padded[:-2] == key) & (padded[2:] == key))
        cells = _hex(rgb[TOP + np.arange(own.wordlines)[:, None] * sy, LEFT + inner[None, :] * sx])
        want = np.asarray([layer_color(la, s) if la >= 0 else "#ffffff"
                           for la, s in zip(own.layer[m][inner].tolist(), own.segment[m][inner].tolist(), strict=True)])
        w = np.arange(own.wordlines)[:, None]
        inside = (w >= own.start[m][inner][None, :]) & (w < own.stop[m][inner][None, :])
        np.testing.assert_array_equal(cells, np.where(inside, want[None, :], "#ffffff"), err_msg=f"macro {m}")


def test_hatch_tells_apart_layers_of_one_colour() -> None:
    """Layers 5, 25 and 45 share a colour: 5 is solid, 25 has ``/`` lines ((x + y) mod 6 = 0) and
    45 ``\\`` lines ((x − y) mod 6 = 0) in the colour mixed with 45 % black."""
    fake, own = synthetic(50, 4)
    raster = MacroRaster(fake, own)  # type: ignore[arg-type]
    assert layer_color(5) == layer_color(25) == layer_color(45)
    y, x = np.mgrid[0:12, 0:12]
    dark = darken(layer_color(5), DARKEN)
    for layer, lines in ((5, np.zeros((12, 12), bool)), (25, (x + y) % 6 == 0), (45, (x - y) % 6 == 0)):
        codes = raster.paint_codes(np.full((12, 12), 2 * layer), raster.swatch_masks)
        colours = _hex(np.asarray(raster.static.palette, dtype=np.uint8)[codes])
        np.testing.assert_array_equal(colours, np.where(lines, dark, layer_color(5)), err_msg=f"layer {layer}")


@pytest.mark.parametrize(("layers", "macros"), [(1, 1), (45, 60), (250, 3)])
def test_png_legend_is_never_clipped(layers: int, macros: int) -> None:
    """The legend lists every layer on the macro and its text stays inside the picture: with
    ~85 layers on one macro the picture grows downward; legacy-export names are shown as module paths."""
    fake, own = synthetic(layers, macros)
    raster = MacroRaster(fake, own)  # type: ignore[arg-type]
    present = np.unique(own.layer[0]).size
    lines = raster.legend(0)
    assert len(lines) == present + 1 and lines[-1][1].startswith("idle")
    canvas = raster.draw(0)
    ink = np.asarray(canvas.ink)
    rows, cols = np.nonzero(ink)
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < canvas.shape[0] - 1 and cols.max() < canvas.shape[1] - 1
    last = TOP + 20 + (len(lines) - 1) * 16
    assert ink[last:last + 12].any(), "the last legend line is drawn"
    assert lines[0][1] == f"0: features.0.conv.0 — {int((own.layer[0] == 0).sum())} BL, 3 seg."  # the module path


@pytest.mark.parametrize(("layers", "macros"), [(1, 1), (45, 60), (250, 400)])
def test_overview_legend_fits_and_lists_every_layer(layers: int, macros: int) -> None:
    """Beside the mosaic while its rows fit, else under the bar chart in columns: inside the
    figure either way, with one entry per layer and one for idle."""
    fake, own = synthetic(layers, macros)
    fig = overview_figure(fake, own)  # type: ignore[arg-type]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = fig.legends[0]
    box, frame = legend.get_window_extent(renderer), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, (box, frame)
    assert len(legend.get_texts()) == layers + 1
    ticks = [t for t in fig.axes[1].get_xticks() if -0.5 <= t <= macros - 0.5]
    assert ticks and all(float(t).is_integer() for t in ticks), "macro ticks are macro numbers"
    for ax in fig.axes:
        extent = ax.get_tightbbox(renderer)
        assert frame.x0 <= extent.x0 and extent.x1 <= frame.x1 + 1, (extent, frame)


def test_svg_macro_legend_grows_with_the_layers() -> None:
    fake, own = synthetic(250, 3)
    painter = MacroPainter(fake, own)  # type: ignore[arg-type]
    for m in range(3):
        fig = painter.paint(m)
        box = fig.legends[0].get_window_extent(fig.canvas.get_renderer())  # type: ignore[attr-defined]
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
        assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == np.unique(own.layer[m]).size + 1


def test_canvas_writes_a_palette_png_with_text(tmp_path: Path) -> None:
    """Colours keep their exact RGB (one palette entry each); text is a grey ramp on white."""
    from PIL import Image

    canvas = Canvas(40, 120)
    red = canvas.color("#be0032")
    canvas.fill(0, 0, 20, 20, red)
    canvas.text((30, 10), "macro 7", 12)
    image = Image.open(canvas.png(tmp_path / "c.png"))
    assert image.mode == "P"
    rgb = np.asarray(image.convert("RGB"))
    assert rgb[:20, :20].tolist() == [[[0xbe, 0x00, 0x32]] * 20] * 20
    text = rgb[:, 30:]
    assert (text.min(axis=2) == text.max(axis=2)).all() and text.min() < 64, "black antialiased text"


def test_parallel_maps_are_the_serial_maps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``jobs=2`` forks two drawing processes: the same files, byte for byte, in the same order."""
    import cimc.views.placement_map as placement_map

    monkeypatch.setattr(placement_map, "CHUNK", 1)
    b = read_build(build("tiny_cnn", macro="small-64", tiling="dense"))
    assert b.num_macros > 2, "more macros than processes"
    serial = write_maps(b, tmp_path / "one", formats=("png", "svg"), overview=False)
    parallel = write_maps(b, tmp_path / "two", formats=("png", "svg"), overview=False, jobs=2)
    assert [p.name for p in parallel] == [p.name for p in serial]
    for a, c in zip(serial, parallel, strict=True):
        assert a.read_bytes() == c.read_bytes(), a.name
    result = CliRunner().invoke(main, ["maps", str(build("tiny_cnn", macro="small-64", tiling="dense")), "-o",
                                       str(tmp_path / "cli"), "--jobs", "2", "--no-overview"])
    assert result.exit_code == 0 and len(list((tmp_path / "cli").iterdir())) == b.num_macros


def test_a_fifo_where_a_map_goes_is_refused(tmp_path: Path) -> None:
    """The numpy PNG writer refuses a FIFO at its path (opening one would block) like every output."""
    import os

    os.mkfifo(tmp_path / "macro_0000.png")
    with pytest.raises(UsageError):
        write_maps(read_build(build("tiny_cnn")), tmp_path, formats=("png",), overview=False)
