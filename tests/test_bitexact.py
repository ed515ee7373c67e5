"""Bit-exactness: emulator == onnxruntime(model.cim.onnx) == numpy reference, exactly, on every
layer's input codes, ADC codes, accumulated sums and outputs, and on the model outputs — for
zoo models, torch-exported models and random graphs; per-layer and per-column steps, shift
on and off, channel-aligned and row-dense tiling, and a plain per-segment loop of the
contract as a fourth, naive check of the reference."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import cimc.models as models
from cimc.api import compile_model
from cimc.ir.annotations import Shift
from cimc.macro import MacroSpec
from cimc.models.export import export_onnx
from cimc.ops.windows import conv2d
from cimc.quant import numerics
from cimc.quant.cim_layer import cim_spec
from cimc.quant.reference import run_layer
from tests.cim_helpers import add_gemm, add_node, assert_three_way, cim_names, compile_ir, write, zoo_onnx
from tests.ir_builders import add_conv, add_unary, conv_out, graph_with_input

pytestmark = pytest.mark.torch  # the zoo or the training hook

ZOO_CASES = [  # model, granularity, shift, tiling, map_fc
    ("tiny_cnn", "layer", True, "channel", True),
    ("tiny_cnn", "column", False, "dense", False),
    ("tiny_residual", "layer", True, "channel", True),
    ("tiny_residual", "column", True, "dense", True),
    ("digits_cnn", "column", True, "channel", False),
    ("digits_cnn", "layer", False, "channel", True),
]


def _input(name: str, n: int, seed: int = 0) -> np.ndarray:
    shape = models.input_shape(name)
    return np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(np.float32)


@pytest.mark.parametrize(("name", "granularity", "shift", "tiling", "map_fc"), ZOO_CASES)
def test_zoo_models(tmp_path: Path, name: str, granularity: str, shift: bool, tiling: str, map_fc: bool) -> None:
    result = compile_model(zoo_onnx(name), tmp_path / "b", granularity=granularity, no_shift=not shift,
                           tiling=tiling, map_fc=map_fc, calib_size=8, macro="small-64")
    assert_three_way(result.out_dir, result.graph, _input(name, 3), optimize=shift)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "granularity", "tiling"), [
    ("vgg9", "layer", "channel"), ("vgg9", "column", "dense"), ("resnet18", "layer", "channel")])
def test_paper_models(tmp_path: Path, name: str, granularity: str, tiling: str) -> None:
    result = compile_model(zoo_onnx(name), tmp_path / "b", granularity=granularity, tiling=tiling, map_fc=True)
    assert_three_way(result.out_dir, result.graph, _input(name, 4), optimize=True)


class TorchNet(nn.Module):
    """Strided conv with bias, asymmetric padding, depthwise conv + BN + LeakyReLU, a residual
    Add, a Concat and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 10, 3, stride=2, bias=True)
        self.dw = nn.Sequential(nn.Conv2d(10, 10, 3, padding=1, groups=10, bias=False), nn.BatchNorm2d(10),
                                nn.LeakyReLU(0.1))
        self.pw = nn.Conv2d(20, 14, 1)
        self.head = nn.Linear(14 * 5 * 5, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.stem(nn.functional.pad(x, (0, 1, 1, 0))))
        b = torch.cat([a, self.dw(a) + a], dim=1)
        return self.head(torch.flatten(torch.relu(self.pw(b)), 1))  # type: ignore[no-any-return]


@pytest.mark.parametrize(("granularity", "shift"), [("layer", True), ("column", False)])
def test_torch_exported_model(tmp_path: Path, granularity: str, shift: bool) -> None:
    torch.manual_seed(0)
    net = TorchNet().eval()
    with torch.no_grad():
        net.dw[1].running_var.uniform_(0.5, 2.0)
        net.dw[1].running_mean.uniform_(-0.5, 0.5)
    export_onnx(net, torch.randn(1, 3, 10, 10), tmp_path / "net.onnx")
    result = compile_model(tmp_path / "net.onnx", tmp_path / "b", granularity=granularity, no_shift=not shift,
                           map_fc=True, macro="small-64", calib_size=8)
    assert len(cim_names(result.graph)) == 4
    x = np.random.default_rng(1).standard_normal((3, 3, 10, 10)).astype(np.float32)
    ref = assert_three_way(result.out_dir, result.graph, x)
    with torch.no_grad():
        float_out = net(torch.from_numpy(x)).numpy()
    y = ref.outputs[result.graph.outputs[0]]  # close to the float model, not equal
    assert np.corrcoef(y.ravel(), float_out.ravel())[0, 1] > 0.9


def test_torch_relu6_folds_through_the_clip(tmp_path: Path) -> None:
    """MobileNetV2's block (conv → BN → ReLU6 → depthwise → ReLU6 → 1×1): torch exports ReLU6 as
    Clip(0, 6); the shifts of the first two layers fold into their readers through it, with the
    Clip's bounds scaled, and the three engines still agree bit for bit."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(), nn.Conv2d(8, 6, 1),
                        nn.Flatten(), nn.Linear(6 * 8 * 8, 4)).eval()
    export_onnx(net, torch.randn(1, 3, 8, 8), tmp_path / "net.onnx")
    result = compile_model(tmp_path / "net.onnx", tmp_path / "b", map_fc=True, macro="small-64", calib_size=8)
    graph = result.graph
    layers = cim_names(graph)
    clips = [n for n in graph.topo_order() if n.op == "Clip"]
    assert len(layers) == 4 and len(clips) == 2
    for layer, clip in zip(layers[:2], clips, strict=True):
        shift = graph.node(layer).ann[Shift]
        assert shift.fold == "activation"
        assert (clip.attrs["min"], clip.attrs["max"]) == (0.0, float(np.float32(6 * shift.gain)))
    assert_three_way(result.out_dir, graph, np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32))


def random_graph(cin: int, h: int, layers: list[tuple[int, ...]], seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    g = graph_with_input((1, cin, h, h))
    y = "x"
    for i, (cout, k, stride, pad, group, bias, relu) in enumerate(layers):
        y = add_conv(g, y, cout, k, group=group, stride=stride, pad=pad, bias=bias, rng=rng, name=f"conv{i}")
        y = add_unary(g, "Relu", y, f"relu{i}") if relu else y
    c = g.shape(y)[1]
    y = add_node(g, "GlobalAveragePool", [y], (1, c, 1, 1), "gap")
    y = add_node(g, "Flatten", [y], (1, c), "flat", axis=1)
    g.outputs.append(add_gemm(g, y, 3, rng, "fc", trans_b=bool(seed % 2)))
    return g


HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=12, deadline=None, suppress_health_check=HEALTH)
@given(case=st.data())
def test_random_graphs(tmp_path_factory: pytest.TempPathFactory, case: st.DataObject) -> None:
    check_random_graph(tmp_path_factory, case)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=HEALTH)
@given(case=st.data())
def test_many_random_graphs(tmp_path_factory: pytest.TempPathFactory, case: st.DataObject) -> None:
    check_random_graph(tmp_path_factory, case)


def check_random_graph(tmp_path_factory: pytest.TempPathFactory, case: st.DataObject) -> None:
    cin, h = case.draw(st.integers(1, 10)), case.draw(st.integers(4, 9))
    spec = case.draw(_stack(cin, h))
    graph = random_graph(cin, h, spec["layers"], spec["seed"])
    macro = MacroSpec(name="rand", wordlines=spec["wordlines"], bitlines=64, adcs=16, load_cycles=8)
    compiled, ctx = compile_ir(graph, macro, granularity=spec["granularity"], shift=spec["shift"],
                               tiling=spec["tiling"], map_fc=spec["map_fc"], fold=spec["fold"])
    build = write(compiled, ctx, tmp_path_factory.mktemp("rand") / "b")
    x = np.random.default_rng(spec["seed"]).standard_normal((2, cin, h, h)).astype(np.float32)
    assert_three_way(build, compiled, x)


def _stack(cin: int, h: int) -> st.SearchStrategy[dict[str, object]]:
    @st.composite
    def draw_stack(draw: st.DrawFn) -> dict[str, object]:
        layers, c, size = [], cin, h
        for _ in range(draw(st.integers(1, 3))):
            k = draw(st.sampled_from([1, 3, 5]))
            stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, k // 2))
            group = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
            cout = group * draw(st.integers(1, 6))
            size = conv_out(size, k, stride, pad)
            assume(size >= 1)
            layers.append((cout, k, stride, pad, group, draw(st.booleans()), draw(st.booleans())))
            c = cout
        return {"layers": layers, "wordlines": draw(st.sampled_from([8, 16, 32])),
                "tiling": draw(st.sampled_from(["channel", "dense"])),
                "granularity": draw(st.sampled_from(["layer", "column"])), "shift": draw(st.booleans()),
                "fold": draw(st.booleans()), "map_fc": draw(st.booleans()), "seed": draw(st.integers(0, 99))}

    return draw_stack()


def naive_layer(x: np.ndarray, spec) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The contract written out plainly: one masked convolution per segment, in a loop."""
    q = spec.q
    a_q = numerics.quantize(x, q.a_step, q.a_bits, q.a_signed)
    w_q = spec.codes()
    total = 0.0
    for lo, hi in itertools.pairwise(spec.bounds):
        mask = np.zeros(spec.rows, np.float32)
        mask[lo:hi] = 1
        p = conv2d(a_q, w_q * mask.reshape(1, *w_q.shape[1:]), None, spec.strides, spec.pads, spec.dilations,
                   spec.groups)
        total = total + numerics.adc_codes(p, q.adc_step, q.adc_bits)
    return numerics.layer_output(np.asarray(total, np.float32), spec.scale(), spec.applied_bias())


@pytest.mark.parametrize(("tiling", "granularity"), [("channel", "layer"), ("dense", "column")])
def test_reference_equals_a_naive_segment_loop(tiling: str, granularity: str) -> None:
    graph = random_graph(6, 7, [(8, 3, 1, 1, 2, True, True), (6, 5, 2, 2, 1, False, False)], seed=3)
    compiled, _ = compile_ir(graph, MacroSpec(name="t", wordlines=16, bitlines=64, adcs=16),
                             tiling=tiling, granularity=granularity)
    x = np.abs(np.random.default_rng(0).standard_normal((2, 6, 7, 7))).astype(np.float32)
    for name in ("conv0", "conv1"):
        spec = cim_spec(compiled, compiled.node(name))
        assert spec.num_segments > 1
        np.testing.assert_array_equal(run_layer(x, spec).outputs, naive_layer(x, spec))
        x = np.maximum(run_layer(x, spec).outputs, 0)
