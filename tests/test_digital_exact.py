"""The digital ops that ``model.cim.onnx`` computes in float64 (``OpDef.double``) or writes as other
ONNX nodes (``OpDef.decompose``): onnxruntime on ``model.cim.onnx`` equals the numpy reference
(``cimc.quant.reference.run_compiled``, what the emulator runs) bit for bit, with graph
optimisations off and on, on inputs spread over [−6, 6] (the tails of Erf, Gelu, Elu, …).

Also the float64 Erf formula (``cimc.ops.defs.erf``) against ``math.erf`` and ``math.erfc``.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest

from cimc.frontend import import_onnx
from cimc.lowering.model import cim_model
from cimc.ops import op_table
from cimc.ops.defs.erf import erf, erf_parts, series_coefficients
from cimc.ops.formula import Backend, NumpyBackend
from cimc.quant.reference import PROBES, probe_feeds, run_compiled
from tests.onnx_builders import feeds_for, single
from tests.test_interpreter import CASES


def _special(case: str) -> bool:
    ops = {node.op for node in import_onnx(CASES[case]()).nodes}
    return any(op_table()[op].double or op_table()[op].decompose is not None for op in ops)


SPECIAL = [case for case in sorted(CASES) if _special(case)]


def test_the_new_float64_ops_are_covered() -> None:
    covered = {node.op for case in SPECIAL for node in import_onnx(CASES[case]()).nodes}
    assert {"Erf", "Gelu", "LayerNormalization", "InstanceNormalization", "GroupNormalization", "Mean", "Pow",
            "Exp", "Log", "Tanh", "Elu", "Selu", "Celu", "Softplus", "Where"} <= covered


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("case", SPECIAL)
def test_model_cim_onnx_equals_reference(case: str, optimize: bool) -> None:
    model = CASES[case]()
    graph = import_onnx(model)
    feeds = {k: v * 6 for k, v in feeds_for(model, seed=7).items()}
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(cim_model(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    for name, want in run_compiled(graph, feeds).outputs.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_sigmoid_of_model_cim_onnx_equals_the_reference_on_large_inputs() -> None:
    """onnxruntime's float64 Sigmoid computes ``1 − 1/(1 + eˣ)`` below 0, which differed from the
    reference after rounding on inputs of standard normal × 8: ``model.cim.onnx`` writes the
    reference's formula instead. Every 127th float32 of ±[2⁻¹⁰, 104] (e^−104 is below float32's
    smallest number), and the probe batches."""
    model = single("Sigmoid", {"x": (1, 1)})
    graph = import_onnx(model)
    cim = cim_model(graph)
    assert "Sigmoid" not in {n.op_type for n in cim.graph.node}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(cim.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    lo, hi = np.float32(2.0**-10).view(np.int32), np.float32(104).view(np.int32)
    grid = np.arange(lo, hi, 127, dtype=np.int32).view(np.float32)
    x = np.concatenate([grid, -grid, [0, np.inf, -np.inf, 3e38, -3e38]]).astype(np.float32).reshape(-1, 1)
    batches = [x, *(probe_feeds({"x": (16384, 1)}, seed, scale)["x"] for seed, scale in PROBES)]
    for batch in batches:
        want = run_compiled(graph, {"x": batch}).outputs["y"]
        np.testing.assert_array_equal(session.run(None, {"x": batch})[0], want)


def test_erf_formula_is_accurate() -> None:
    x = np.concatenate([np.linspace(-7, 7, 20001), np.geomspace(1e-300, 1, 200), -np.geomspace(1e-30, 1, 200)])
    be = NumpyBackend(np.float64)
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(be, x), want, rtol=1e-14, atol=0)
    t = np.abs(x)
    _, _, erfc = erf_parts(be, t)
    np.testing.assert_allclose(erfc, [math.erfc(min(v, 6.0)) for v in t], rtol=2e-12, atol=0)
    x32 = x.astype(np.float32)  # rounded to float32 it is the correctly rounded erf
    np.testing.assert_array_equal(erf(be, x32.astype(np.float64)).astype(np.float32),
                                  np.array([math.erf(v) for v in x32.astype(np.float64)]).astype(np.float32))


def test_numpy_chebyshev_is_the_generic_recurrence_bit_for_bit() -> None:
    """``NumpyBackend.chebyshev`` (in-place buffers) computes exactly what ``Backend.chebyshev`` writes
    as ONNX nodes, for the Erf series and a short one."""
    be = NumpyBackend(np.float64)
    y = np.random.default_rng(1).uniform(-1, 1, 10_000)
    for coefs in (*series_coefficients(), (0.5, 0.25, 0.125), (0.5, 0.25)):
        np.testing.assert_array_equal(be.chebyshev(y, coefs), Backend.chebyshev(be, y, coefs))
