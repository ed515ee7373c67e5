"""Weight-pool compression (docs/weight-pool.md): the pool construction, the pool-weights pass,
bit-exactness of pooled layers (emulator == onnxruntime(model.cim.onnx) == numpy reference),
the build file and its validation, and the cost figures."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from cimc.cli.main import main
from cimc.cost.pool import index_bits, layer_pool_cost, model_pool_cost, pool_columns_read
from cimc.emulator.validate import validate_build
from cimc.errors import UsageError
from cimc.ir.annotations import QuantParams, WeightPool, WordlineTiling
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.pool_weights import PoolWeights
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.scale_to_shift import ScaleToShift
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant import numerics
from cimc.quant.cim_layer import code_matrix
from cimc.quant.weight_pool import PoolConfig, codes, effective_weights, pool_layers, vectors
from tests.cim_helpers import SMALL, add_node, assert_three_way, small_cnn, write
from tests.ir_builders import add_conv, graph_with_input

SLICED = MacroSpec(name="small-2bit", wordlines=32, bitlines=64, adcs=16, cell_bits=2, dac_bits=2, load_cycles=32)


def matrices(seed: int = 0) -> list[np.ndarray]:
    """Three layers of correlated weights (a few hidden directions plus noise), different scales."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((6, 64)).astype(np.float32)
    out = []
    for cout, rows, scale in ((16, 40, 0.5), (24, 64, 0.05), (8, 27, 2.0)):
        mix = rng.standard_normal((cout, 6)).astype(np.float32)
        w = mix @ basis[:, :rows] + 0.3 * rng.standard_normal((cout, rows)).astype(np.float32)
        out.append((scale * w).astype(np.float32))
    return out


def relative_error(ms: list[np.ndarray], config: PoolConfig) -> float:
    pool, layers = pool_layers(ms, config)
    num = sum(float(np.sum((m - effective_weights(x, pool, config.multiplier, m.shape[1])) ** 2))
              for m, x in zip(ms, layers, strict=True))
    return num / sum(float(np.sum(m ** 2)) for m in ms)


def test_reconstruction_error_decreases_with_pool_size_and_error_term() -> None:
    ms = matrices()
    errors = [relative_error(ms, PoolConfig(8, p)) for p in (2, 8, 32, 128)]
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    with_error = [relative_error(ms, PoolConfig(8, 32, 1, prune)) for prune in (0.0, 0.5, 1.0)]
    assert with_error[0] < with_error[1] < with_error[2], with_error
    assert with_error[0] < errors[2]  # the error term helps at the same pool size


def test_pool_is_deterministic_binary_and_codes_are_exact() -> None:
    ms = matrices()
    config = PoolConfig(8, 16, 1, 0.25, per_column=True)
    pool, layers = pool_layers(ms, config)
    again_pool, again = pool_layers(ms, config)
    np.testing.assert_array_equal(pool, again_pool)
    for a, b in zip(layers, again, strict=True):
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.scale, b.scale)
        assert a.error is not None and b.error is not None
        np.testing.assert_array_equal(a.error, b.error)
    assert pool.shape == (16, 8) and set(np.unique(pool)) <= {-1, 1}
    for m, x in zip(ms, layers, strict=True):
        q = codes(pool, x.index, x.error, config.multiplier, m.shape[1])
        assert set(np.unique(q)) <= {-3, -2, -1, 1, 2, 3}
        assert x.error is not None and np.mean(~np.any(x.error != 0, axis=2)) == pytest.approx(0.25, abs=0.05)
        # the quantizer at S_W = α gives back q exactly: what quantize, reference, ONNX and emulator compute
        w = effective_weights(x, pool, config.multiplier, m.shape[1])
        np.testing.assert_array_equal(numerics.weight_codes(w, x.scale, config.code_bits), q)


def test_vectors_cut_rows_by_length_and_pad_the_last() -> None:
    m = np.arange(2 * 5, dtype=np.float32).reshape(2, 5)
    v = vectors(m, 2)
    assert v.shape == (3, 2, 2)
    np.testing.assert_array_equal(v[1, 1], [7, 8])
    np.testing.assert_array_equal(v[2, 0], [4, 0])


def test_cost_figures_by_hand() -> None:
    index = np.array([[0, 4, 0], [1, 1, 2]])
    error = np.zeros((2, 3, 10), dtype=np.int8)
    error[0, 0, :3] = 1  # kept
    error[1, 2, 5] = -1  # kept; the other 4 positions pruned
    cost = layer_pool_cost("l", index, error, scales=1, pool_size=5, rows=20, out_pixels=7, w_slices=1, a_slices=2)
    assert index_bits(5) == 3 and index_bits(2) == 1 and index_bits(1) == 1 and index_bits(64) == 6
    assert cost.pool_columns_read == 2 + 2
    # segment 0: (0, 0) converts its own column, indices {4, 0} are shared: 3; segment 1: {1} and (1, 2): 2
    assert cost.adc_conversions == (3 + 2) * 2 * 7 and cost.unpooled_adc_conversions == 6 * 2 * 7
    assert layer_pool_cost("l", index, None, 1, 5, 20, 7, 1, 2).adc_conversions == 4 * 2 * 7
    assert cost.index_bits == 6 * 3 and cost.error_bits == 2 * 10 + 6 and cost.scale_bits == 32
    assert cost.effective_bits_per_weight == pytest.approx((18 + 26 + 32) / 60)
    assert pool_columns_read(np.array([[3, 3, 3, 3]]), groups=2) == 2  # groups never share a conversion
    model = model_pool_cost([cost], 5, 10, 2, 1, 64)
    assert model.pool_bitlines == 5 and model.pool_bits == 50 and model.logical_bitlines == 6
    assert model.effective_bits_per_weight == pytest.approx((18 + 26 + 32 + 50) / 60)


def pooled_passes(pool: PoolWeights, granularity: str = "layer", w_bits: int | None = None) -> list:  # type: ignore[type-arg]
    return [FoldBatchNorm(), SelectCim(map_fc=True), TileWordlines(), pool,
            Quantize(granularity=granularity, calib_size=8, default_bits=LayerBits(w_bits=w_bits)), PlaceBitlines(),
            ScaleToShift()]


def compile_pooled(pool: PoolWeights, macro: MacroSpec = SMALL, granularity: str = "layer",
                   w_bits: int | None = None) -> tuple[Graph, PassContext]:
    ctx = PassContext(macro=macro)
    return run_passes(small_cnn(group=2), pooled_passes(pool, granularity, w_bits), ctx), ctx


CASES = {
    "binary": (PoolWeights(pool_size=8, vector_length=8), SMALL, "layer"),
    "error-pruned-column": (PoolWeights(pool_size=16, vector_length=16, error_bits=1, error_prune=0.5), SMALL,
                            "column"),
    "sliced": (PoolWeights(pool_size=4, vector_length=8, error_bits=1), SLICED, "layer"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def pooled_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, Graph, PoolWeights]:
    pool, macro, granularity = CASES[request.param]
    graph, ctx = compile_pooled(pool, macro, granularity)
    return write(graph, ctx, tmp_path_factory.mktemp("pool") / "b"), graph, pool


def test_pooled_layers_are_bit_exact_and_valid(pooled_build: tuple[Path, Graph, PoolWeights]) -> None:
    build, graph, config = pooled_build
    for node in (n for n in graph.nodes if WeightPool in n.ann):
        pool, q = node.ann[WeightPool], node.ann[QuantParams]
        assert node.ann[WordlineTiling].bounds[1] == min(config.vector_length, node.ann[WordlineTiling].rows)
        assert q.w_bits == pool.code_bits and np.array_equal(q.w_step, pool.scale)
        want = codes(pool.pool, pool.index, pool.error, pool.multiplier, node.ann[WordlineTiling].rows)
        np.testing.assert_array_equal(code_matrix(graph, node), want)  # the cells' codes are the pool's
    slices = {n.ann[QuantParams].w_slices for n in graph.nodes if QuantParams in n.ann}
    assert slices == ({2} if config.error_bits and config.pool_size == 4 else {1})  # "sliced": 3-bit codes, 2-bit cells
    x = np.random.default_rng(5).standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert_three_way(build, graph, x)
    result = validate_build(build)
    assert result.ok, result.violations
    assert "pool" in result.checks and any("re-derived" in n for n in result.notes)
    report = json.loads((build / "report.json").read_text())["weight_pool"]
    assert report["pool_size"] == config.pool_size and len(report["layers"]) == 3


def _tamper(build: Path, tmp_path: Path, change: str) -> Path:
    out = Path(shutil.copytree(build, tmp_path / "t"))
    arrays = {k: v.copy() for k, v in load_file(str(out / "weight_pool.safetensors")).items()}
    key = "layer_0001.index"
    if change == "range":
        arrays[key][0, 0] = arrays["pool"].shape[0]
    else:
        flat = arrays[key].reshape(-1)
        flat[0] = (flat[0] + 1) % arrays["pool"].shape[0]
    save_file(arrays, str(out / "weight_pool.safetensors"))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["weight_pool.safetensors"] = hashlib.sha256((out / "weight_pool.safetensors").read_bytes()
                                                                  ).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def binary_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    graph, ctx = compile_pooled(PoolWeights(pool_size=8, vector_length=8))
    return write(graph, ctx, tmp_path_factory.mktemp("pool") / "b")


@pytest.mark.parametrize(("change", "message"), [("range", "outside [0, "), ("other", "cells differ")])
def test_validate_refuses_a_tampered_index(binary_build: Path, tmp_path: Path, change: str, message: str) -> None:
    result = validate_build(_tamper(binary_build, tmp_path, change))
    assert any(v.check == "pool" and message in v.message for v in result.violations), result.violations


def test_too_long_vectors_and_too_few_weight_bits_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="longer than"):
        compile_pooled(PoolWeights(pool_size=4, vector_length=SMALL.wordlines + 1))
    with pytest.raises(UsageError, match="need 3 bits, 2 were asked"):
        compile_pooled(PoolWeights(pool_size=4, vector_length=8, error_bits=1), w_bits=2)


def test_wider_asked_weight_bits_keep_the_pool_codes() -> None:
    graph, _ = compile_pooled(PoolWeights(pool_size=4, vector_length=8), w_bits=4)
    node = next(n for n in graph.nodes if WeightPool in n.ann)
    pool = node.ann[WeightPool]
    assert node.ann[QuantParams].w_bits == 4
    np.testing.assert_array_equal(code_matrix(graph, node), codes(pool.pool, pool.index, None, 1,
                                                                  node.ann[WordlineTiling].rows))


def fc_graph() -> Graph:
    """conv → flatten → Gemm (transB = 0, alpha = 0.5) → MatMul: every weight layout the pass rewrites."""
    rng = np.random.default_rng(1)
    g = graph_with_input((2, 3, 4, 4))
    y = add_conv(g, "x", 6, 3, pad=1, bias=True, rng=rng, name="c1")
    y = add_node(g, "Flatten", [y], (2, 96), "fl", axis=1)
    g.set_initializer("g.w", (rng.standard_normal((96, 10)) * 0.2).astype(np.float32))
    g.set_initializer("g.b", rng.standard_normal(10).astype(np.float32))
    y = add_node(g, "Gemm", [y, "g.w", "g.b"], (2, 10), "g", alpha=0.5, beta=1.0, transA=0, transB=0)
    g.set_initializer("m.w", (rng.standard_normal((10, 7)) * 0.3).astype(np.float32))
    g.outputs.append(add_node(g, "MatMul", [y, "m.w"], (2, 7), "mm"))
    return g


def test_gemm_and_matmul_weights_are_rewritten_exactly(tmp_path: Path) -> None:
    pool = PoolWeights(pool_size=8, vector_length=8, error_bits=1)
    ctx = PassContext(macro=SMALL)
    graph = run_passes(fc_graph(), pooled_passes(pool), ctx)
    gemm = graph.node("g")
    assert gemm.attrs["transB"] == 1 and gemm.attrs["alpha"] == 1.0
    for name in ("c1", "g", "mm"):
        node = graph.node(name)
        p = node.ann[WeightPool]
        want = codes(p.pool, p.index, p.error, p.multiplier, node.ann[WordlineTiling].rows)
        np.testing.assert_array_equal(code_matrix(graph, node), want, err_msg=name)
    build = write(graph, ctx, tmp_path / "b")
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4)).astype(np.float32)
    assert_three_way(build, graph, x)
    assert validate_build(build).ok


def test_cli_compile_with_a_weight_pool_records_it_and_validates(tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ["compile", "digits_cnn", "-o", str(out), "--weight-pool", "32", "--pool-vector", "8",
            "--pool-error-bits", "1", "--pool-error-prune", "0.25"]
    result = CliRunner().invoke(main, ["--json", *args])
    assert result.exit_code == 0, result.output
    options = json.loads((out / "manifest.json").read_text())["options"]
    assert (options["weight_pool"], options["pool_vector"], options["pool_error_bits"],
            options["pool_error_prune"]) == (32, 8, 1, 0.25)
    assert "passes" not in options  # the pooled pipeline is the base pipeline of --weight-pool
    layout = json.loads((out / "layout.json").read_text())
    assert all(x["pool_vector_length"] == 8 and x["tiling"] == "dense" for x in layout["layers"])
    report = json.loads((out / "report.json").read_text())["weight_pool"]
    assert report["pool_size"] == 32 and report["multiplier"] == 2 and 0 < report["effective_bits_per_weight"] < 3
    assert "## Weight pool" in (out / "report.md").read_text()
    validated = CliRunner().invoke(main, ["validate", str(out)])
    assert validated.exit_code == 0, validated.output
    refused = CliRunner().invoke(main, ["compile", "digits_cnn", "-o", str(tmp_path / "c"), "--weight-pool", "0"])
    assert refused.exit_code == 2


def test_default_compile_has_no_pool(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compile", "digits_cnn", "-o", str(tmp_path / "b"), "--json"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "b" / "weight_pool.safetensors").exists()
    assert "weight_pool" not in json.loads((tmp_path / "b" / "report.json").read_text())
    layers = json.loads((tmp_path / "b" / "layout.json").read_text())["layers"]
    assert all("pool_vector_length" not in x for x in layers)


@pytest.mark.parametrize("change", ["missing", "garbage"])
def test_validate_reports_a_missing_or_corrupt_pool_file(binary_build: Path, tmp_path: Path, change: str) -> None:
    out = Path(shutil.copytree(binary_build, tmp_path / "t"))
    manifest = json.loads((out / "manifest.json").read_text())
    if change == "missing":
        (out / "weight_pool.safetensors").unlink()
        del manifest["files"]["weight_pool.safetensors"]
    else:
        (out / "weight_pool.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"not json")
        manifest["files"]["weight_pool.safetensors"] = hashlib.sha256(
            (out / "weight_pool.safetensors").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = validate_build(out)
    pool = [v for v in result.violations if v.check == "pool"]
    assert pool and ("missing" in pool[0].message if change == "missing" else "safetensors" in pool[0].message), pool


# -- pictures: the pool's bitlines and the index tables (cimc maps, HTML report) ---------------------
def _cell_rgb(png: bytes, tables_shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The picture's RGB pixels and its cell size (``pool_map``'s layout)."""
    import io

    from PIL import Image

    from cimc.views.pool_map import cell_size

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), cell_size(*tables_shape)


def _hex(rgb: np.ndarray) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def test_pool_pictures_colour_each_cell_by_its_pool_vector(pooled_build: tuple[Path, Graph, PoolWeights]) -> None:
    from cimc.build.reader import read_build
    from cimc.views.palette import lighten
    from cimc.views.pool_map import MARGIN, TITLE, index_canvas, png_bytes, pool_canvas, read_pool, vector_colors

    build, graph, config = pooled_build
    tables = read_pool(read_build(build))
    assert tables is not None and len(tables.layers) == 3
    colors = vector_colors(config.pool_size)
    pixels, c = _cell_rgb(png_bytes(pool_canvas(tables)), tables.pool.T.shape)
    for k, t in itertools.product(range(tables.pool.shape[0]), range(tables.pool.shape[1])):
        got = _hex(pixels[TITLE + MARGIN + t * c, MARGIN + k * c])  # the cell's top-left pixel
        assert got == (colors[k] if tables.pool[k, t] > 0 else lighten(colors[k], 0.7)), (k, t)
    for layer in tables.layers:
        node = next(n for n in graph.nodes if n.name == layer.name)
        np.testing.assert_array_equal(layer.index, node.ann[WeightPool].index)
        pixels, c = _cell_rgb(png_bytes(index_canvas(tables, layer)), layer.index.shape)
        s, o = np.indices(layer.index.shape)
        top_left = pixels[TITLE + MARGIN + s * c, MARGIN + o * c]
        assert [_hex(x) for x in top_left.reshape(-1, 3)] == [colors[k] for k in layer.index.reshape(-1)]
        centre = pixels[TITLE + MARGIN + s * c + c // 2, MARGIN + o * c + c // 2].reshape(-1, 3)
        np.testing.assert_array_equal(np.all(centre == 0, axis=1), layer.kept.reshape(-1))  # dots: kept errors
        assert layer.kept.any() == (config.error_bits == 1)


def test_maps_and_html_show_the_pool_only_for_pooled_builds(binary_build: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from cimc.build.reader import read_build
    from cimc.views.html_report import html_report
    from cimc.views.placement_map import write_maps

    written = {p.name for p in write_maps(read_build(binary_build), tmp_path / "m", overview=False)}
    assert {"pool.png", "pool_index_0000.png", "pool_index_0001.png", "pool_index_0002.png"} <= written
    page = html_report(read_build(binary_build))
    assert "<h2 id=pool>Weight pool</h2>" in page and page.count("data-layer-pool=") == 3
    assert page.count("src='data:image/png;base64,") == 4
    ctx = PassContext(macro=SMALL)
    plain = run_passes(small_cnn(group=2), [FoldBatchNorm(), SelectCim(map_fc=True), TileWordlines(),
                                            Quantize(calib_size=8), PlaceBitlines(), ScaleToShift()], ctx)
    unpooled = read_build(write(plain, ctx, tmp_path / "plain"))
    assert not any(p.name.startswith("pool") for p in write_maps(unpooled, tmp_path / "n", overview=False))
    assert "id=pool" not in html_report(unpooled)


def test_pool_pictures_refuse_an_index_outside_the_pool(binary_build: Path, tmp_path: Path) -> None:
    from cimc.build.reader import read_build
    from cimc.errors import BuildError
    from cimc.views.pool_map import read_pool

    with pytest.raises(BuildError, match="index table of layer 1"):
        read_pool(read_build(_tamper(binary_build, tmp_path, "range")))


def test_evidence_table_of_the_trained_nets() -> None:
    """``scripts/weight_pool_evidence.py --nets``' table: labels, bitlines saved against uniform
    4-bit, rows by effective bits, and a partial run said so."""
    from scripts import weight_pool_evidence as evidence

    def row(how: str, config: dict, bits: float, top1: float, bitlines: int) -> dict:  # type: ignore[type-arg]
        return {"net": "vgg9", "how": how, "config": config, "effective_bits": bits, "compiled_top1": top1,
                "float_top1": 0.99, "cells": 10, "bitlines": bitlines, "macros": 1, "conversions": 5}

    pool = {"weight_pool": 256, "pool_vector": 16, "pool_error_bits": 0}
    rows = [row("ptq", {"w_bits": 4}, 4.04, 0.98, 2672), row("ptq", pool, 0.55, 0.11, 256),
            row("qat", pool, 0.55, 0.80, 256)]
    meta = {"torch": "t", "python": "p", "load": "1.0", "train": 4000, "test": 1000, "float_epochs": 3,
            "phase1": 1, "phase2": 1, "qat_size": 1000, "minutes": 3.0, "partial": True, "asked": 4}
    text = evidence.nets_markdown(rows, meta)
    assert "Partial run: 3 of 4 rows" in text and "### vgg9 (float top-1 99.0%)" in text
    lines = [x for x in text.splitlines() if x.startswith("| uniform") or x.startswith("| pool")]
    assert lines[0].startswith("| uniform 4-bit PTQ | 4.040 | 98.0 |") and lines[0].endswith("| 0.0% | 5 |")
    assert lines[1].startswith("| pool P=256, L=16, E=0 PTQ | 0.550 | 11.0 |") and "| 90.4% |" in lines[1]
    assert lines[2].startswith("| pool P=256, L=16, E=0 QAT | 0.550 | 80.0 |")


def test_readme_pool_qat_table_is_the_evidence_file_s() -> None:
    """The README's trained-nets table quotes ``benchmarks/results/weight_pool_nets.json``."""
    root = Path(__file__).resolve().parent.parent
    rows = json.loads((root / "benchmarks" / "results" / "weight_pool_nets.json").read_text())["rows"]
    top1 = {(r["net"], r["how"], json.dumps(r["config"], sort_keys=True)): r for r in rows if "qat" not in r
            or r["qat"]["size"] == 1000}
    readme = (root / "README.md").read_text(encoding="utf-8").splitlines()
    start = readme.index("| VGG9 / ResNet-18 | eff. bits/weight | top-1 % after training (PTQ) | top-1 % QAT | "
                         "bitlines on chip |")
    table = [line for line in readme[start + 3:start + 12] if line.startswith("| uniform") or
             line.startswith("| pool")]
    configs = {"uniform 4-bit": {"w_bits": 4}, "uniform 2-bit": {"w_bits": 2}}
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0]
        if name.startswith("pool"):
            p, length = (int(x.split("=")[1]) for x in name.split(",")[:2])
            config = {"weight_pool": p, "pool_vector": length, "pool_error_bits": 0 if "no error" in name else 1}
        else:
            config = configs[name]
        key = json.dumps(config, sort_keys=True)
        for i, net in enumerate(("vgg9", "resnet18")):
            ptq = top1[(net, "ptq", key)]
            assert cells[2].split(" / ")[i] == f"{100 * ptq['compiled_top1']:.1f}", (name, net)
            assert cells[1].split(" / ")[i] == f"{ptq['effective_bits']:.2f}", (name, net)
            assert cells[4].split(" / ")[i] == f"{ptq['bitlines']:,}", (name, net)
            if cells[3]:
                assert cells[3].split(" / ")[i] == f"{100 * top1[(net, 'qat', key)]['compiled_top1']:.1f}", (name, net)
    assert len(table) == 6
    longer = [r for r in rows if r.get("qat", {}).get("size") == 4000 and r["net"] in ("vgg9", "resnet18")]
    prose = " ".join(readme)
    assert len(longer) == 2 and all(f"{100 * r['compiled_top1']:.1f}% ({'VGG9' if r['net'] == 'vgg9' else 'ResNet-18'})"
                                    in prose for r in longer)
