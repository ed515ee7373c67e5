"""Shared helpers of the quantization, ``model.cim.onnx``, emulator and bit-exactness tests:
small IR graphs, a compile of the full CIM pipeline, and the three-way comparison
emulator == onnxruntime(model.cim.onnx) == numpy reference."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from cimc.backend.macro import build_files
from cimc.backend.quant_part import quant_info
from cimc.build.directory import write_build
from cimc.emulator import Emulator
from cimc.ir.annotations import CimLayer
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo
from cimc.lowering.model import expose
from cimc.macro import MacroSpec
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import GraphPass, PassContext, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.quantize import Quantize
from cimc.passes.scale_to_shift import ScaleToShift
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant.reference import CompiledRun, run_compiled
from tests.ir_builders import add_conv, add_unary, graph_with_input

#: A small macro: 32 wordlines force several segments even in tiny layers.
SMALL = MacroSpec(name="small-test", wordlines=32, bitlines=64, adcs=16, load_cycles=32)
LAYER_FIELDS = ("input_codes", "adc_codes", "sums")


def add_node(g: Graph, op: str, ins: Sequence[str], shape: tuple[int, ...], name: str, **attrs: object) -> str:
    out = f"{name}.y"
    g.tensors[out] = TensorInfo(out, shape)
    g.add_node(Node(name, op, tuple(ins), (out,), dict(attrs)))
    return out


def add_gemm(g: Graph, x: str, cout: int, rng: np.random.Generator, name: str, trans_b: bool = True) -> str:
    k = g.shape(x)[1]
    w = rng.standard_normal((cout, k) if trans_b else (k, cout)).astype(np.float32) * 0.3
    g.set_initializer(f"{name}.w", w)
    g.set_initializer(f"{name}.b", rng.standard_normal(cout).astype(np.float32))
    return add_node(g, "Gemm", [x, f"{name}.w", f"{name}.b"], (g.shape(x)[0], cout), name,
                    alpha=1.0, beta=1.0, transA=0, transB=int(trans_b))


def small_cnn(seed: int = 0, cin: int = 3, h: int = 8, group: int = 1, batch: int = 1) -> Graph:
    """conv(bias) → relu → maxpool → conv(group) → relu → GAP → flatten → gemm."""
    rng = np.random.default_rng(seed)
    g = graph_with_input((batch, cin, h, h))
    y = add_unary(g, "Relu", add_conv(g, "x", 12, 3, pad=1, bias=True, rng=rng, name="c1"), "r1")
    y = add_node(g, "MaxPool", [y], (batch, 12, h // 2, h // 2), "mp", kernel_shape=(2, 2), strides=(2, 2),
                 pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=0)
    y = add_unary(g, "Relu", add_conv(g, y, 20, 3, pad=1, group=group, rng=rng, name="c2"), "r2")
    y = add_node(g, "GlobalAveragePool", [y], (batch, 20, 1, 1), "gap")
    y = add_node(g, "Flatten", [y], (batch, 20), "fl", axis=1)
    g.outputs.append(add_gemm(g, y, 5, rng, "fc"))
    return g


def cim_passes(granularity: str = "layer", shift: bool = True, tiling: str = "channel", map_fc: bool = True,
               calib: str = "synthetic", fold: bool = True) -> list[GraphPass]:
    passes: list[GraphPass] = [FoldBatchNorm(), SelectCim(map_fc=map_fc), TileWordlines(mode=tiling),
                               Quantize(granularity=granularity, calib=calib, calib_size=8), PlaceBitlines()]
    return [*passes, ScaleToShift(fold=fold, calib=calib)] if shift else passes


def compile_ir(graph: Graph, macro: MacroSpec = SMALL, **options: object) -> tuple[Graph, PassContext]:
    ctx = PassContext(macro=macro)
    return run_passes(graph, cim_passes(**options), ctx), ctx  # type: ignore[arg-type]


def write(graph: Graph, ctx: PassContext, folder: Path) -> Path:
    """The build directory of a compiled graph."""
    build = build_files(graph, ctx.macro, None, {"kind": "onnx", "name": "test.onnx", "sha256": "0" * 64}, {},
                        quant_info(ctx))
    write_build(folder, build.files, build.manifest)
    return folder


def cim_names(graph: Graph) -> list[str]:
    return [n.name for n in graph.topo_order() if CimLayer in n.ann]


def run_ort_exposed(build: Path, graph: Graph, feeds: dict[str, np.ndarray], optimize: bool = False
                    ) -> dict[str, np.ndarray]:
    """``model.cim.onnx`` of the build with every layer's codes, sums and output exposed."""
    names = cim_names(graph)
    model = expose(onnx.load(str(build / "model.cim.onnx")), names, [graph.node(n).outputs[0] for n in names])
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outs = [o.name for o in session.get_outputs()]
    return dict(zip(outs, session.run(outs, feeds), strict=True))


def assert_same_run(a: CompiledRun, b: CompiledRun) -> None:
    assert sorted(a.outputs) == sorted(b.outputs) and sorted(a.traces) == sorted(b.traces)
    for name, value in a.outputs.items():
        np.testing.assert_array_equal(value, b.outputs[name], err_msg=name)
    for layer, trace in a.traces.items():
        for field in (*LAYER_FIELDS, "outputs"):
            np.testing.assert_array_equal(getattr(trace, field), getattr(b.traces[layer], field),
                                          err_msg=f"{layer} {field}")


def assert_three_way(build: Path, graph: Graph, x: np.ndarray, optimize: bool = False) -> CompiledRun:
    """Emulator, onnxruntime and the reference agree bit for bit on every layer and output;
    the emulator's run without ``record`` (its scratch, its lanes) gives the same outputs."""
    feeds = {graph.inputs[0]: x}
    emulator = Emulator.open(build)
    emulated = emulator.run(x, record=True)
    reference = run_compiled(graph, feeds, record=True)
    assert_same_run(emulated, reference)
    plain = emulator.run(x).outputs
    for name, value in reference.outputs.items():
        np.testing.assert_array_equal(plain[name], value, err_msg=f"emulator without record {name}")
    ort_values = run_ort_exposed(build, graph, feeds, optimize)
    for name, value in reference.outputs.items():
        np.testing.assert_array_equal(ort_values[name], value, err_msg=f"onnxruntime {name}")
    for layer, trace in reference.traces.items():
        for field in LAYER_FIELDS:
            np.testing.assert_array_equal(ort_values[f"{layer}/{field}"], getattr(trace, field),
                                          err_msg=f"onnxruntime {layer} {field}")
        np.testing.assert_array_equal(ort_values[graph.node(layer).outputs[0]], trace.outputs,
                                      err_msg=f"onnxruntime {layer} outputs")
    return reference


_TMP: list[str] = []


@functools.cache
def zoo_onnx(name: str) -> Path:
    """The zoo model exported once per test process (seed 0)."""
    import cimc.models as models

    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="cimc-test-zoo-"))
        atexit.register(shutil.rmtree, _TMP[0], True)
    path = Path(_TMP[0]) / f"{name}.onnx"
    models.export_onnx(name, path)
    return path
