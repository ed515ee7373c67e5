"""Bit-slicing on the mapping side: placement of digit columns, the cost model's slice
factors (figures derived by hand), weight digits in the build files, ``cimc validate`` on
sliced builds, and the 8-bit VGG9 doubling the 4-bit figures exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from cimc.build.reader import read_build
from cimc.cost.model import model_cost
from cimc.emulator.validate import validate_build
from cimc.ir.annotations import BitlinePlacement, QuantParams, WordlineTiling
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.mapping.columns import slice_columns
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.scale_to_shift import ScaleToShift
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant.cim_layer import cim_spec, code_matrix
from tests.cim_helpers import write
from tests.ir_builders import add_conv, add_unary, graph_with_input

pytestmark = pytest.mark.torch  # the zoo or the training hook

#: 32 wordlines × 8 bitlines, 4 ADCs: a 3×3 conv over 4 channels needs 2 segments.
TINY = MacroSpec(name="tiny", wordlines=32, bitlines=8, adcs=4, bitlines_per_adc=2, load_cycles=32)


def tiny_net() -> Graph:
    """c1: 3×3 conv 4→3 (rows 36 = 27 + 9 over 2 segments, 16 pixels) → relu → c2: 1×1 3→2."""
    rng = np.random.default_rng(3)
    g = graph_with_input((1, 4, 4, 4))
    y = add_unary(g, "Relu", add_conv(g, "x", 3, 3, pad=1, bias=True, rng=rng, name="c1"), "r1")
    g.outputs.append(add_conv(g, y, 2, 1, rng=rng, name="c2"))
    return g


def compile_tiny(w_bits: int = 8, a_bits: int = 8) -> tuple[Graph, PassContext]:
    passes = [FoldBatchNorm(), SelectCim(), TileWordlines(mode="channel"),
              Quantize(calib_size=8, default_bits=LayerBits(w_bits=w_bits, a_bits=a_bits)), PlaceBitlines(),
              ScaleToShift()]
    ctx = PassContext(macro=TINY)
    return run_passes(tiny_net(), passes, ctx), ctx  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny() -> tuple[Graph, PassContext]:
    return compile_tiny()


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory, tiny: tuple[Graph, PassContext]) -> Path:
    return write(*tiny, tmp_path_factory.mktemp("sliced") / "build")


def test_slice_columns_by_hand() -> None:
    # from column 5 of 8-bitline macros, 4 groups of 2: one fits on macro 0 (5, 6), bitline 7 idles
    macro, bitline = slice_columns(5, 4, 2, 8)
    assert macro.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert bitline.tolist() == [5, 6, 0, 1, 2, 3, 4, 5]
    m1, b1 = slice_columns(13, 20, 1, 8)  # one slice: the unsliced global axis
    assert m1.tolist() == [(13 + k) // 8 for k in range(20)] and b1.tolist() == [(13 + k) % 8 for k in range(20)]


def test_placement_of_sliced_layers_by_hand(tiny: tuple[Graph, PassContext]) -> None:
    graph, _ = tiny
    c1, c2 = graph.node("c1"), graph.node("c2")
    assert (c1.ann[QuantParams].w_slices, c1.ann[QuantParams].a_slices) == (2, 2)
    assert c1.ann[WordlineTiling].bounds == (0, 27, 36)
    p1, p2 = c1.ann[BitlinePlacement], c2.ann[BitlinePlacement]
    # c1: k = (s·3 + o)·2 + j, 6 groups of 2, 4 groups per macro
    assert p1.macro.tolist() == [0] * 8 + [1] * 4
    assert p1.bitline.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]
    assert p2.first_column == 12 and p2.macro.tolist() == [1] * 4 and p2.bitline.tolist() == [4, 5, 6, 7]


def test_aligned_policy_places_slices_on_fresh_macros() -> None:
    graph, _ = compile_tiny()
    placed = run_passes(graph, [PlaceBitlines(policy="aligned")], PassContext(macro=TINY))
    p2 = placed.node("c2").ann[BitlinePlacement]
    assert p2.first_column == 16 and p2.macro.tolist() == [2] * 4 and p2.bitline.tolist() == [0, 1, 2, 3]


def test_cost_figures_by_hand(tiny: tuple[Graph, PassContext]) -> None:
    cost = model_cost(tiny[0], TINY)
    c1, c2 = cost.layers
    # c1: S=2 segments, Cout=3, Sw=2, T=2, P=16, Cout_g·Sw/A = 6/4 → 2 rounds
    assert (c1.bitlines, c1.adc_conversions, c1.partial_sums) == (12, 12 * 2 * 16, 12 * 16)
    assert c1.computing_cycles == 16 * 2 * 2 * 1 * (2 + 1)
    assert (c1.macros, c1.loading_cycles, c1.params) == (2, 64, 108)
    assert c1.macro_usage == pytest.approx(108 * 2 / (2 * 256))  # cells holding a digit
    assert (c1.w_bits, c1.a_bits, c1.w_slices, c1.a_slices) == (8, 8, 2, 2)
    # c2: 1 segment, Cout=2: 4 columns, 1 round
    assert (c2.bitlines, c2.adc_conversions, c2.partial_sums, c2.computing_cycles) == (4, 128, 64, 16 * 2 * 1 * 2)
    assert (cost.bitlines, cost.macros, cost.adc_conversions, cost.partial_sum_storage) == (16, 2, 512, 192)


def test_cells_hold_digits_that_recombine_to_the_codes(tiny: tuple[Graph, PassContext], tiny_build: Path) -> None:
    graph, _ = tiny
    b = read_build(tiny_build)
    own = b.owners
    arrays = np.stack([b.macro_weights(m) for m in range(b.num_macros)]).astype(np.int64)
    for i, name in enumerate(b.layer_names):
        node = graph.node(name)
        codes, bounds = code_matrix(graph, node), node.ann[WordlineTiling].bounds
        q = cim_spec(graph, node).q
        entry = b.layout.layers[i]
        assert (entry.w_slices, entry.a_slices) == (q.w_slices, q.a_slices) == (2, 2)
        total = np.zeros_like(codes, dtype=np.int64)
        for m, line in zip(*np.nonzero(own.used & (own.layer == i)), strict=True):
            s, o, j, w0 = own.segment[m, line], own.out_channel[m, line], own.slices[m, line], own.start[m, line]
            rows = bounds[s + 1] - bounds[s]
            digit = arrays[m, w0:w0 + rows, line]
            lo, hi = (0, 15) if j < q.w_slices - 1 else (-8, 7)
            assert lo <= digit.min() and digit.max() <= hi
            total[o, bounds[s]:bounds[s + 1]] += digit << (4 * j)
        np.testing.assert_array_equal(total, codes)


def test_validate_passes_on_a_sliced_build(tiny_build: Path) -> None:
    result = validate_build(tiny_build)
    assert result.violations == [], result.violations
    doc = json.loads((tiny_build / "schedule.json").read_text())
    step = next(s for s in doc["steps"] if s["node"] == "c1")
    assert (step["conversion_rounds"], step["w_slices"], step["a_slices"]) == (2, 2, 2)


def _tampered(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _categories(folder: Path) -> set[str]:
    return {v.check for v in validate_build(folder).violations}


def test_validate_catches_a_tampered_digit(tiny_build: Path, tmp_path: Path) -> None:
    folder = _tampered(tiny_build, tmp_path / "digit")
    weights = load_file(folder / "weights.safetensors")
    cells = weights["macro_0000"].copy()
    cells[0, 0] = (int(cells[0, 0]) + 1) % 16  # a lower digit, still in its range: only the value is wrong
    save_file({**weights, "macro_0000": cells}, folder / "weights.safetensors")
    assert "cells" in _categories(folder)
    cells[0, 0] = -1  # outside a lower digit's range [0, 15]
    save_file({**weights, "macro_0000": cells}, folder / "weights.safetensors")
    found = _categories(folder)
    assert {"weights", "quant"} <= found


def test_validate_catches_a_wrong_slice_index(tiny_build: Path, tmp_path: Path) -> None:
    folder = _tampered(tiny_build, tmp_path / "slice")
    layout = json.loads((folder / "layout.json").read_text())
    digits = layout["macros"][0]["slice"]
    digits[0], digits[1] = digits[1], digits[0]  # digit 1 before digit 0
    (folder / "layout.json").write_text(json.dumps(layout))
    violations = validate_build(folder).violations
    assert any(v.check == "layout" and "adjacent" in v.message for v in violations)
    assert any(v.check == "cells" for v in violations)


def test_report_shows_precision_and_slicing(tiny_build: Path) -> None:
    report = json.loads((tiny_build / "report.json").read_text())
    row = report["layers"][0]
    assert {k: row[k] for k in ("w_bits", "a_bits", "w_slices", "a_slices")} == {
        "w_bits": 8, "a_bits": 8, "w_slices": 2, "a_slices": 2}
    md = (tiny_build / "report.md").read_text()
    assert "8/8/5 ×2×2" in md and "layer c1: 8-bit weights over 2 cells of 4 bits" in md


@pytest.mark.slow
def test_vgg9_eight_bits_double_the_figures() -> None:
    from cimc.api import CompileOptions, compile_graph, load_source

    def cost(**bits: int):  # type: ignore[no-untyped-def]
        options = CompileOptions(calib_size=4, **bits)
        graph, ctx = compile_graph(load_source("vgg9", options)[0], options)
        return model_cost(graph, ctx.macro)

    base, w8, a8 = cost(), cost(w_bits=8), cost(a_bits=8)
    for b, w, a in zip(base.layers, w8.layers, a8.layers, strict=True):
        assert (w.bitlines, w.adc_conversions, w.partial_sums) == (2 * b.bitlines, 2 * b.adc_conversions,
                                                                    2 * b.partial_sums)
        assert (a.bitlines, a.adc_conversions, a.computing_cycles) == (b.bitlines, 2 * b.adc_conversions,
                                                                        2 * b.computing_cycles)
    assert w8.bitlines == 2 * base.bitlines == 77_184 and a8.computing_cycles == 2 * base.computing_cycles


@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="node.js not installed")
def test_html_hover_names_the_digit(tiny_build: Path, tmp_path: Path) -> None:
    """The page's own ``cell()`` (run in node.js) names channel and digit like ``describe_cell``."""
    import re
    import subprocess

    from cimc.build.cell_map import describe_cell
    from cimc.views.html_report import SCRIPT, html_report

    b = read_build(tiny_build)
    data = re.search(r"id='cimc-data'>(.*?)</script>", html_report(b), re.S)[1].replace("<\\/", "</")  # type: ignore[index]
    cells = [tuple(int(v) for v in c) for c in np.argwhere(b.owners.layer_grid() >= 0)]
    cell_fn = SCRIPT[SCRIPT.index("function cell"):SCRIPT.index("for(const svg")]
    (tmp_path / "hover.js").write_text(f"const D={data};{cell_fn}\nconst Q={json.dumps(cells)};"
                                       "console.log(JSON.stringify(Q.map(([m,w,b])=>cell(m,w,b))));")
    got = json.loads(subprocess.run(["node", str(tmp_path / "hover.js")], capture_output=True, text=True,
                                    check=True).stdout)
    for (m, w, x), text in zip(cells, got, strict=True):
        want = describe_cell(b.layout, b.owners, m, w, x)
        assert f"output channel {want['out_channel']}\n" in text
        assert f"weight digit {want['slice']} of {want['w_slices']}" in text
