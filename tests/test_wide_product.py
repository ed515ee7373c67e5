"""The quantized reference computes Gemm and MatMul in float64 (``OpDef.double``) without a
float64 copy of the weight: the kernels promote (``OpDef.promotes``) and cast a block of output
columns at a time. The result is the one-call float64 product bit for bit, and the memory a
digital Gemm needs is its float32 weight plus one block, not twice the weight again."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from cimc.ops import find
from cimc.ops.defs import fully_connected
from cimc.ops.defs.fully_connected import product
from cimc.quant.reference import digital_op


def operands(m: int, k: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)), (rng.standard_normal((k, n)) * 0.05).astype(np.float32)


@pytest.mark.parametrize(("m", "k", "n"), [(16, 700, 1000), (64, 300, 2000), (1, 513, 333), (3, 64, 4099),
                                           (8, 1, 130)])
@pytest.mark.parametrize("block", [1, 200 * 8 * 700, 2**40])
def test_blocked_product_is_the_one_call_product(m: int, k: int, n: int, block: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The fewest columns a block may have, a few hundred, or one block: the same float64
    bits, remainders included (a block of 64 columns of a (64, 300) input is 2^20 MACs)."""
    x, w = operands(m, k, n)
    monkeypatch.setattr(fully_connected, "CAST_BLOCK_BYTES", block)
    got = product(x, w)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, x @ w.astype(np.float64))


def test_matmul_batched_weight_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A weight with batch dims is blocked on its last axis; a 1-D weight is not blocked."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 5, 40)), rng.standard_normal((2, 40, 300)).astype(np.float32)
    monkeypatch.setattr(fully_connected, "CAST_BLOCK_BYTES", 1)
    np.testing.assert_array_equal(product(x, w), np.matmul(x, w.astype(np.float64)))
    v = rng.standard_normal(40).astype(np.float32)
    np.testing.assert_array_equal(product(x, v), np.matmul(x, v.astype(np.float64)))


@pytest.mark.parametrize(("trans_b", "beta", "alpha"), [(0, 1.0, 1.0), (1, 0.3, 1.7)])
def test_digital_gemm_equals_the_float64_gemm(trans_b: int, beta: float, alpha: float,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``digital_op`` hands the float32 weight and bias over uncast; the output is the Gemm of
    float64 copies of every operand rounded once, bias scaled by ``beta`` in float64 too."""
    x, w = operands(4, 300, 520)
    x = x.astype(np.float32)
    wt = np.ascontiguousarray(w.T) if trans_b else w
    b = np.random.default_rng(2).standard_normal(520).astype(np.float32)
    attrs = {"alpha": alpha, "beta": beta, "transA": 0, "transB": trans_b}
    want = (alpha * (x.astype(np.float64) @ w.astype(np.float64)) + beta * b.astype(np.float64)).astype(np.float32)
    monkeypatch.setattr(fully_connected, "CAST_BLOCK_BYTES", 64 * 300 * 8)
    got = digital_op("Gemm", [x, wt, b], attrs)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_only_gemm_and_matmul_promote() -> None:
    """``promotes`` hands weights over uncast: only kernels that promote them may carry it."""
    assert find("Gemm").promotes and find("MatMul").promotes
    assert not find("BatchNormalization").promotes


def test_digital_gemm_makes_no_float64_copy_of_its_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16 MiB float32 weight in blocks of 1 MiB: the old route cast it whole (32 MiB more)."""
    monkeypatch.setattr(fully_connected, "CAST_BLOCK_BYTES", 2**20)
    x, w = operands(2, 2048, 2048)
    x = x.astype(np.float32)
    attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    tracemalloc.start()
    try:
        y = digital_op("Gemm", [x, w], attrs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.shape == (2, 2048)
    assert peak < w.nbytes, f"peak {peak} bytes for a {w.nbytes}-byte weight"
