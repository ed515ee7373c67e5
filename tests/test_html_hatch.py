"""Past 20 layers the HTML report tells layers of one colour apart as the PNG maps do: layer ``ℓ``
carries the hatch ``palette.pattern(ℓ)`` (``/`` for layers 20–39) over its colour, in the maps,
the thumbnails, the usage bars and every swatch (layer list, tables, runs tables)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cimc.api import compile_model
from cimc.build.reader import BuildDir, read_build
from cimc.views.html_report import HATCH_IDS, html_report
from cimc.views.palette import DARKEN, KELLY, hatch_lines, layer_color, pattern, swatch_css
from tests.map_builds import build

LAYERS = 24


def chain(path: Path, layers: int = LAYERS) -> Path:
    """``layers`` 1×1 convs of 16 channels on a 4×4 input, Relu between: one CIM layer of 16
    bitlines each (24 of them fill one and a half paper macros)."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        w = numpy_helper.from_array(rng.standard_normal((16, 16, 1, 1)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, 4])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 16, 4, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildDir:
    tmp = tmp_path_factory.mktemp("hatch")
    out = tmp / "b"
    compile_model(str(chain(tmp / "chain.onnx")), out)
    b = read_build(out)
    assert len(b.layer_names) == LAYERS
    return b


@pytest.fixture(scope="module")
def page(built: BuildDir) -> str:
    return html_report(built)


def test_the_scheme_gives_a_second_cue_to_layers_that_share_a_colour() -> None:
    for layer in range(20, 80):
        twin = layer % len(KELLY)
        assert layer_color(layer) == layer_color(twin) and pattern(layer) != pattern(twin)
        assert swatch_css(layer) != swatch_css(twin) and swatch_css(twin) == layer_color(twin)
    assert hatch_lines(20) == ("/",) and hatch_lines(40) == ("\\",) and hatch_lines(60) == ("/", "\\")


def test_layers_0_and_20_share_a_colour_and_differ_by_hatch_in_the_maps(page: str) -> None:
    maps = re.findall(r"<svg class='macro'.*?</svg>", page, re.S)
    fills: dict[int, set[str]] = {}
    for svg in maps:
        for layer, fill in re.findall(r"<rect class='l(\d+)' [^>]*fill='([^']*)'", svg):
            fills.setdefault(int(layer), set()).add(fill)
    assert layer_color(0) in fills[0] and layer_color(20) in fills[20] and layer_color(0) == layer_color(20)
    hatch = f"url(#{HATCH_IDS['/']})"
    assert hatch in fills[20] and all(hatch not in fills[i] for i in range(20))  # the first 20: colour alone
    assert all(hatch in fills[i] for i in range(20, LAYERS))


def test_every_hatch_rect_covers_a_coloured_run_of_its_layer(page: str) -> None:
    """An overlay repeats the box of the run beneath it: the hatch never strays onto another layer."""
    runs = re.findall(r"<rect class='l(\d+)' (x='[^']*' y='[^']*' width='[^']*' height='[^']*') fill='([^']*)'", page)
    boxes = {(layer, box) for layer, box, fill in runs if not fill.startswith("url(")}
    overlays = [(layer, box) for layer, box, fill in runs if fill.startswith("url(")]
    assert overlays and all(o in boxes for o in overlays)


def test_the_patterns_are_defined_once_in_45_percent_black(page: str) -> None:
    for direction, pid in HATCH_IDS.items():
        assert page.count(f"<pattern id='{pid}'") == 1
        defined = re.search(rf"<pattern id='{pid}'[^>]*rotate\((-?\d+)\)'><rect [^>]*fill-opacity='([\d.]+)'", page)
        assert defined is not None and float(defined[2]) == DARKEN
        assert int(defined[1]) == (45 if direction == "/" else -45)


def test_swatches_and_usage_bars_carry_the_hatch(page: str) -> None:
    swatch = re.compile(r"<button type=button data-layer='(\d+)'[^>]*><span class=sw style='background:([^']*)'>")
    backgrounds = {int(i): bg for i, bg in swatch.findall(page)}
    assert backgrounds[0] == layer_color(0)
    assert backgrounds[20] == swatch_css(20) and "repeating-linear-gradient(-45deg" in backgrounds[20]
    assert backgrounds[20].endswith(layer_color(0))
    bars = re.findall(r"<svg class=usage .*?</svg>", page, re.S)[0]
    assert f"class='l20' fill='url(#{HATCH_IDS['/']})'" in bars and "class='l0' fill='url(" not in bars
    data = re.search(r"id='cimc-data'>(.*?)</script>", page, re.S)[1]  # type: ignore[index]
    assert '"sw":["' + swatch_css(20, 0) in data.replace("<\\/", "</")  # the runs tables' swatches


def test_each_run_of_a_map_is_tagged_with_its_layer_index(built: BuildDir, page: str) -> None:
    """As the PNG maps past 20 layers: layers 0 and 20 look alike but their runs say 0 and 20."""
    cards = re.findall(r"<section class=card id='macro-(\d+)'>(.*?)</section>", page, re.S)
    assert len(cards) == built.num_macros >= 2
    for m, card in cards:
        tags = re.search(r"<g class=tags [^>]*>(.*?)</g>", card, re.S)
        assert tags is not None
        shown = [int(t) for t in re.findall(r"<text [^>]*>(\d+)</text>", tags[1])]
        present = [int(x) for x in dict.fromkeys(built.owners.layer[int(m)].tolist()) if x >= 0]
        assert shown == present  # every run is 16 bitlines, wide enough for its tag
    few = html_report(read_build(build("digits_cnn")))  # 3 layers: colour alone, no tags, no hatch
    assert "<g class=tags" not in few and "fill='url(#hatch" not in few
