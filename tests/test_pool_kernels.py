"""The pool kernels equal onnxruntime bit for bit on seeded random geometries.

AveragePool sums each window in onnxruntime's order (``cimc.ops.defs.averagepool``): each of the
three orders (``rows``, ``lanes``, ``columns``) is exercised (kernel, strides, pads, ``ceil_mode``,
``count_include_pad``, wide inputs past MLAS's buffer, kernels past 32). MaxPool reduces tap by
tap (with dilations and ``ceil_mode``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from cimc.api import CompileOptions, compile_model
from cimc.emulator.validate import validate_build
from cimc.ops import op_table
from cimc.ops.defs.averagepool import summation_order
from cimc.ops.windows import pool_shape
from tests.corpus.make_corpus import unsorted, with_attr

KERNEL = op_table()["AveragePool"].kernel


def _onnxruntime(x: np.ndarray, a: dict[str, Any], op: str = "AveragePool") -> np.ndarray:
    node = helper.make_node(op, ["x"], ["y"], **{k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in a.items()})
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])  # model.cim.onnx's opset
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _geometry(rng: np.random.Generator) -> tuple[dict[str, Any], tuple[int, ...]]:
    big = rng.random() < 0.15
    k = tuple(int(v) for v in rng.integers(1, 40 if big else 6, size=2))
    a: dict[str, Any] = {"kernel_shape": k, "strides": tuple(int(v) for v in rng.integers(1, 5, size=2)),
                         "pads": tuple(int(rng.integers(0, k[i % 2])) for i in range(4)) if rng.random() < 0.7
                         else (0, 0, 0, 0),
                         "ceil_mode": int(rng.integers(0, 2)), "count_include_pad": int(rng.integers(0, 2))}
    if rng.random() < 0.07:  # a global window
        a.update(strides=(1, 1), pads=(0, 0, 0, 0))
        return a, (int(rng.integers(1, 3)), int(rng.integers(1, 4)), *k)
    width = int(rng.integers(2035, 2055)) if rng.random() < 0.1 else int(rng.integers(k[1], k[1] + 40))  # MLAS's buffer
    return a, (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(k[0], k[0] + 20)), max(width, k[1]))


@pytest.mark.parametrize("seed", range(3))
def test_average_pool_equals_onnxruntime_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    orders: Counter[str] = Counter()
    for _ in range(200):
        a, shape = _geometry(rng)
        x = (rng.standard_normal(shape) * 10).astype(np.float32)
        want = _onnxruntime(x, a)
        got = KERNEL([x], a)
        orders[summation_order(shape[2:], a)] += 1
        assert got.shape == want.shape == pool_shape([shape], a)
        np.testing.assert_array_equal(got, want, err_msg=str(a))
    assert min(orders[o] for o in ("rows", "lanes", "columns")) >= 3, orders  # every order is exercised


@pytest.mark.parametrize("width", [2043, 2044, 2045])
def test_the_vector_kernel_ends_where_mlas_buffer_does(width: int) -> None:
    """Width plus pads up to 2,045 floats sum by columns, one more by rows."""
    a = {"kernel_shape": (3, 3), "strides": (1, 1), "pads": (0, 1, 0, 1), "ceil_mode": 0, "count_include_pad": 0}
    x = (np.random.default_rng(width).standard_normal((1, 2, 4, width)) * 10).astype(np.float32)
    assert summation_order(x.shape[2:], a) == ("columns" if width <= 2043 else "rows")
    np.testing.assert_array_equal(KERNEL([x], a), _onnxruntime(x, a))


def test_the_fuzz_example_validates(tmp_path: Path) -> None:
    """The slow fuzz run's failure: the corpus model with its MaxPool turned into an AveragePool
    compiled (FC on CIM) into a build whose emulator differed from onnxruntime on the pool."""
    model = with_attr(unsorted(), "MaxPool", "count_include_pad", 0, new_op="AveragePool")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    compile_model(path, tmp_path / "build", CompileOptions(map_fc=True))
    result = validate_build(tmp_path / "build")
    assert result.ok, [str(v) for v in result.violations]
    assert any("bit for bit" in note for note in result.notes)


def test_max_pool_equals_onnxruntime_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for _ in range(150):
        k = tuple(int(v) for v in rng.integers(1, 5, size=2))
        a = {"kernel_shape": k, "strides": tuple(int(v) for v in rng.integers(1, 4, size=2)),
             "pads": tuple(int(rng.integers(0, k[i % 2])) for i in range(4)),
             "dilations": tuple(int(v) for v in rng.integers(1, 3, size=2)), "ceil_mode": int(rng.integers(0, 2))}
        x = rng.standard_normal((1, 2, int(rng.integers(9, 20)), int(rng.integers(9, 20)))).astype(np.float32)
        np.testing.assert_array_equal(op_table()["MaxPool"].kernel([x], a), _onnxruntime(x, a, "MaxPool"),
                                      err_msg=str(a))
