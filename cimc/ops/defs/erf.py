"""Erf: ``y = erf(x) = (2/√π) ∫₀ˣ e^(−t²) dt`` (elementwise).

Computed in float64 and rounded once (``double``) by one formula of basic operations
(``cimc.ops.formula``), which ``model.cim.onnx`` writes as float64 ONNX nodes (onnxruntime has
no float64 Erf): with ``t = min(|x|, 6)``,

* ``t < 2``:  ``erf(t) = t · P(t²)``, ``P(u) = erf(√u)/√u`` a Chebyshev series on ``u ∈ [0, 4]``;
* ``t ≥ 2``:  ``erf(t) = 1 − e^(−t²) · Q(t)``, ``Q(t) = e^(t²) erfc(t)`` a Chebyshev series on [2, 6]
  (``erfc(6) < 2.2·10⁻¹⁷``: ``erf`` is 1 in float64 beyond);

``erf(x) = sign(x) · erf(t)``. The series are fitted once to ``math.erf``/``math.erfc`` (degree 17
and 22; error below 10⁻¹⁴ relative, checked by the tests). The numpy kernel runs each series
on the elements of its range only (``Backend.piecewise``), the ONNX form on all, then ``Where``.
``erf_parts`` also gives ``1 − erf(t)`` without cancellation for Gelu. Channel-preserving, can be negative, odd but not
homogeneous (``erf(c·x) ≠ c·erf(x)``).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from cimc.ops.base import Attrs, never
from cimc.ops.formula import Backend, chebyshev, in_float64, to_onnx
from cimc.ops.unary import unary_op

if TYPE_CHECKING:
    import torch

    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node

T = TypeVar("T")
SPLIT, LIMIT = 2.0, 6.0
P_DEGREE, Q_DEGREE = 17, 22  # the first coefficients below 10⁻¹⁶; the fit's later ones are noise


@functools.cache
def series_coefficients() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Chebyshev coefficients of ``P`` on [0, 4] (in ``y = u/2 − 1``) and ``Q`` on [2, 6] (``y = t/2 − 2``)."""
    from numpy.polynomial import chebyshev as cheb

    def p(y: np.ndarray) -> np.ndarray:
        u = (y + 1.0) * 2.0
        return np.array([math.erf(math.sqrt(v)) / math.sqrt(v) if v > 0 else 2 / math.sqrt(math.pi) for v in u])

    def q(y: np.ndarray) -> np.ndarray:
        return np.array([math.erfc(t) * math.exp(t * t) for t in (y + 1.0) * 2.0 + SPLIT])

    fit: Any = cheb.chebinterpolate  # numpy's stubs type the function's values as scalars
    return tuple(float(c) for c in fit(p, P_DEGREE)), tuple(float(c) for c in fit(q, Q_DEGREE))


def erf_parts(be: Backend[T], x: T) -> tuple[T, T, T]:
    """``(t, erf(t), erfc(t))`` for ``t = min(|x|, 6)``, each without cancellation where it is small."""
    pc, qc = series_coefficients()

    def below(be: Backend[T], t: T) -> tuple[T, T]:
        u = be.op("Min", be.mul(t, t), be.const(SPLIT * SPLIT))  # the clamps keep the other branch finite
        small = be.mul(t, chebyshev(be, be.sub(be.mul(u, be.const(0.5)), be.const(1.0)), pc))
        return small, be.sub(be.const(1.0), small)

    def above(be: Backend[T], t: T) -> tuple[T, T]:
        tb = be.op("Max", t, be.const(SPLIT))
        tail = be.mul(be.op("Exp", be.op("Neg", be.mul(tb, tb))),
                      chebyshev(be, be.sub(be.mul(tb, be.const(0.5)), be.const(2.0)), qc))
        return be.sub(be.const(1.0), tail), tail

    t = be.op("Min", be.op("Abs", x), be.const(LIMIT))
    erf_t, erfc_t = be.piecewise(t, SPLIT, below, above)
    return t, erf_t, erfc_t


def erf(be: Backend[T], x: T) -> T:
    """``erf(x) = sign(x) · erf(|x|)``."""
    _, erf_t, _ = erf_parts(be, x)
    return be.where_less(x, be.const(0.0), be.op("Neg", erf_t), erf_t)


def _kernel(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return in_float64(erf, ins)


def _torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return ins[0].erf()


def _decompose(b: ExportBuilder, node: Node, wide: bool) -> bool:
    """float64 (``model.cim.onnx``): the formula; float32: ONNX Erf itself."""
    if wide:
        to_onnx(b, node, True, erf)
    return wide


DEFS = (unary_op("Erf", _kernel, _torch, nonnegative=never, homogeneous=never, double=True, decompose=_decompose),)
