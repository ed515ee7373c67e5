"""``benchmarks.cim_onnx_variants``: each rewrite of ``model.cim.onnx`` touches the nodes it
names and keeps the outputs bit for bit under onnxruntime's default optimizations (the figures
in ``benchmarks/results/emulator.md`` rest on that check)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from benchmarks.cim_onnx_variants import ORDER, variant
from cimc.lowering.model import cim_model
from tests.cim_helpers import compile_ir
from tests.ir_builders import add_conv, add_unary, graph_with_input


def _model(shift: bool, granularity: str = "layer") -> onnx.ModelProto:
    """3×3 conv (1 segment) → Relu → 1×1 conv over 64 channels (2 whole segments, no gather) →
    Relu → 3×3 conv (several segments); every Relu is read by a DAC alone."""
    rng = np.random.default_rng(0)
    g = graph_with_input((2, 3, 6, 6))
    y = add_unary(g, "Relu", add_conv(g, "x", 64, 3, pad=1, bias=True, rng=rng, name="c1"), "r1")
    y = add_unary(g, "Relu", add_conv(g, y, 16, 1, rng=rng, name="c2"), "r2")
    g.outputs.append(add_conv(g, y, 8, 3, pad=1, rng=rng, name="c3"))
    compiled, _ = compile_ir(g, shift=shift, granularity=granularity)
    return cim_model(compiled)


@pytest.fixture(scope="module", params=["layer", "column"])
def model(request: pytest.FixtureRequest) -> tuple[str, onnx.ModelProto]:
    """Per layer: one shift per layer; per column: a shift and an ADC step per output channel."""
    return request.param, _model(shift=True, granularity=request.param)


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


#: What each variant must have rewritten: an op gone and one come.
SIGNS = {"relu": ("Relu", None), "fold": ("Mul", None), "s1": (None, "Squeeze"), "bn": ("Mul", "BatchNormalization"),
         "dac3": ("Round", "QuantizeLinear"), "mm": (None, "MatMul")}


@pytest.mark.parametrize("name", [*SIGNS, "relu+fold+s1+dac3+mm"])
def test_variants_rewrite_and_keep_every_bit(model: tuple[str, onnx.ModelProto], name: str) -> None:
    """Per column, ``fold`` finds no ``DequantizeLinear → ReduceSum``: a per-channel ADC clips its
    codes after the ``DequantizeLinear`` (``Clip`` takes scalar bounds), so the ``Mul`` stays."""
    granularity, cim = model
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32) * 2
    rewritten = variant(cim, name)
    ops = {n.op_type for n in onnx.load_from_string(rewritten).graph.node}
    for part in name.split("+"):
        gone, come = SIGNS[part]
        if part == "fold" and granularity == "column":
            assert "Mul" in ops
            continue
        assert gone is None or gone not in ops
        assert come is None or come in ops
    np.testing.assert_array_equal(_run(rewritten, x).view(np.uint32), _run(variant(cim, "orig"), x).view(np.uint32))
    np.testing.assert_array_equal(_run(cim.SerializeToString(), x).view(np.uint32), _run(rewritten, x).view(np.uint32))


def test_scales_not_powers_of_two_stay_a_multiplication() -> None:
    """Without scale-to-shift the output scale ``S_W·S_ADC·S_A`` is no power of two: ``fold`` and
    ``bn`` would round differently, so they leave the ``Mul`` in place."""
    unshifted = _model(shift=False)
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    for name in ("fold", "bn"):
        rewritten = variant(unshifted, name)
        assert "Mul" in {n.op_type for n in onnx.load_from_string(rewritten).graph.node}
        np.testing.assert_array_equal(_run(rewritten, x), _run(variant(unshifted, "orig"), x))


def test_unknown_variants_are_refused(model: tuple[str, onnx.ModelProto]) -> None:
    assert set(SIGNS) | {"qdqdac"} == set(ORDER)
    with pytest.raises(SystemExit, match="unknown variant"):
        variant(model[1], "fold+nope")
