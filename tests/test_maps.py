"""Placement maps: cell owners against the weights, every picture rendered (Agg) on zoo
models, pixels of each layer's colour where its cells are, deterministic SVG, and a clear
message without matplotlib."""

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
from cimc.views.palette import layer_color, shade_colors
from cimc.views.placement_map import (
    MacroPainter,
    mosaic,
    mosaic_shape,
    overview_figure,
    require_matplotlib,
    save,
    write_maps,
)
from tests.map_builds import build

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


def test_fast_png_has_the_pixels_of_savefig(tmp_path: Path) -> None:
    """``MacroPainter.png`` redraws only the changing artists onto a saved background: every
    macro's PNG equals matplotlib's full ``savefig`` of the same figure pixel for pixel."""
    from PIL import Image

    b = read_build(build("tiny_residual", map_fc=True))
    own = owners(b.layout)
    fast, slow = MacroPainter(b, own), MacroPainter(b, own)
    for m in [*range(own.shape[0]), 0]:  # macro 0 again after the others: nothing stale is left
        fast.png(m, tmp_path / "fast.png")
        save(slow.paint(m), tmp_path / "slow.png")
        a = np.asarray(Image.open(tmp_path / "fast.png").convert("RGBA"))
        c = np.asarray(Image.open(tmp_path / "slow.png").convert("RGBA"))
        np.testing.assert_array_equal(a, c, err_msg=f"macro {m}")
