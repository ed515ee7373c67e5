"""Elementwise formulas written once and run two ways: on numpy arrays, or as ONNX nodes.

An op whose ONNX form onnxruntime cannot run where cimc needs it (Erf and Gelu have no float64
kernel in onnxruntime, Gelu and GroupNormalization no opset-17 form) writes its maths once as a
function of a ``Backend``: ``NumpyBackend`` computes it (the op's kernel), ``OnnxBackend`` appends
the same operations as ONNX nodes (the op's ``decompose`` rule, ``cimc.ops.base``). Both run the
same IEEE operations in the same order on the same dtype; only the transcendental functions
(``exp``, ``log``, ``tanh`` of float64) and the order of a ReduceMean's sum may differ in the
last float64 bit between numpy and onnxruntime, which the single rounding to float32 that
follows almost always absorbs (the contract of ``OpDef.double``). Formulas avoid cancellations
that would magnify such a bit (``expm1``, ``log1p``; Erf's ``erfc`` tail).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

if TYPE_CHECKING:
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node

T = TypeVar("T")
#: A formula: ``f(backend, *inputs)`` → the output, written with the backend's operations only.
Formula = Callable[..., Any]


class Backend(Generic[T]):
    """The operations a formula may use; ``T`` is a numpy array or an ONNX tensor name."""

    def const(self, value: float | np.ndarray) -> T:
        raise NotImplementedError

    def op(self, name: str, *args: T, **attrs: Any) -> T:
        """The ONNX op ``name`` (Add, Sub, Mul, Div, Exp, Log, Tanh, Sqrt, Abs, Neg, Min, Max, Less,
        Where; ReduceMean with ``axes``/``keepdims``, Reshape with ``shape``) of ``args``."""
        raise NotImplementedError

    def add(self, a: T, b: T) -> T:
        return self.op("Add", a, b)

    def sub(self, a: T, b: T) -> T:
        return self.op("Sub", a, b)

    def mul(self, a: T, b: T) -> T:
        return self.op("Mul", a, b)

    def div(self, a: T, b: T) -> T:
        return self.op("Div", a, b)

    def where_less(self, a: T, b: T, then: T, other: T) -> T:
        """``then`` where ``a < b``, else ``other``."""
        return self.op("Where", self.op("Less", a, b), then, other)

    def chebyshev(self, y: T, coefs: Sequence[float]) -> T:
        """``Σ_k coefs[k] · T_k(y)`` by Clenshaw's recurrence ``b_k = (c_k + 2y·b_{k+1}) − b_{k+2}``,
        ``f = (c_0 + y·b_1) − b_2``."""
        y2 = self.add(y, y)
        b1, b2 = self.const(coefs[-1]), None
        for c in coefs[-2:0:-1]:
            step = self.add(self.const(c), self.mul(y2, b1))
            b1, b2 = (self.sub(step, b2) if b2 is not None else step), b1
        tail = self.add(self.const(coefs[0]), self.mul(y, b1))
        return self.sub(tail, b2) if b2 is not None else tail

    def piecewise(self, x: T, split: float, below: Callable[..., tuple[T, ...]],
                  above: Callable[..., tuple[T, ...]]) -> tuple[T, ...]:
        """``below(self, x)`` where ``x < split``, else ``above(self, x)`` (tuples of equal length,
        elementwise functions of ``x``): both on every element, then ``Where``."""
        low, high = below(self, x), above(self, x)
        return tuple(self.where_less(x, self.const(split), a, b) for a, b in zip(low, high, strict=True))


def _reduce_mean(x: np.ndarray, axes: Sequence[int], keepdims: int) -> np.ndarray:
    return np.asarray(x.mean(axis=tuple(axes), keepdims=bool(keepdims), dtype=x.dtype))


_NUMPY: dict[str, Callable[..., Any]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Exp": np.exp, "Log": np.log,
    "Tanh": np.tanh, "Sqrt": np.sqrt, "Abs": np.abs, "Neg": np.negative, "Min": np.minimum, "Max": np.maximum,
    "Less": np.less, "Where": np.where,
}


class NumpyBackend(Backend[np.ndarray]):
    """Computes the formula in ``dtype`` (float32 or float64)."""

    def __init__(self, dtype: np.dtype[Any] | type) -> None:
        self.dtype = np.dtype(dtype)

    def const(self, value: float | np.ndarray) -> np.ndarray:
        return np.asarray(value, dtype=self.dtype)

    def op(self, name: str, *args: np.ndarray, **attrs: Any) -> np.ndarray:
        if name == "ReduceMean":
            return _reduce_mean(args[0], attrs["axes"], attrs["keepdims"])
        if name == "Reshape":  # ONNX: a 0 copies the input's dim
            x = args[0]
            return x.reshape(tuple(x.shape[i] if d == 0 else int(d) for i, d in enumerate(attrs["shape"])))
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # IEEE inf/nan, as onnxruntime
            return np.asarray(_NUMPY[name](*args))

    def chebyshev(self, y: np.ndarray, coefs: Sequence[float]) -> np.ndarray:
        """Clenshaw's recurrence as ``Backend.chebyshev`` writes it, operation for operation, in
        three rotating buffers (IEEE addition commutes, so ``c + t`` in place is ``t + c``)."""
        y = np.asarray(y, self.dtype)
        y2 = y + y
        if len(coefs) < 3:
            return super().chebyshev(y, coefs)
        b1 = y2 * self.dtype.type(coefs[-1])  # y2 · b1 with b1 the constant c_n
        b1 += self.dtype.type(coefs[-2])
        b2 = np.full(y.shape, coefs[-1], self.dtype)
        tmp = np.empty_like(y)
        for c in coefs[-3:0:-1]:
            np.multiply(y2, b1, out=tmp)
            tmp += self.dtype.type(c)
            tmp -= b2
            b1, b2, tmp = tmp, b1, b2
        np.multiply(y, b1, out=tmp)
        tmp += self.dtype.type(coefs[0])
        tmp -= b2
        return tmp

    def piecewise(self, x: np.ndarray, split: float, below: Callable[..., tuple[np.ndarray, ...]],
                  above: Callable[..., tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        """Each branch on its own elements only (elementwise operations give every element the
        value they give it in the whole array, so this equals the ``Where`` of both)."""
        x = np.asarray(x, self.dtype)
        mask = x < split
        low, high = below(self, x[mask]), above(self, x[~mask])
        outs = []
        for a, b in zip(low, high, strict=True):
            out = np.empty(x.shape, self.dtype)
            out[mask], out[~mask] = a, b
            outs.append(out)
        return tuple(outs)


class OnnxBackend(Backend[str]):
    """Appends the formula's operations to ``builder`` as ONNX nodes named after ``node``, on
    tensors of ``dtype`` (constants are initializers of that dtype)."""

    def __init__(self, builder: ExportBuilder, node: Node, dtype: np.dtype[Any] | type) -> None:
        self.b, self.node, self.dtype = builder, node, np.dtype(dtype)

    def fresh(self, base: str) -> str:
        return self.b.fresh(f"{self.node.name}/{base}")

    def const(self, value: float | np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh("c")
        self.b.extra.append(numpy_helper.from_array(np.asarray(value, dtype=self.dtype), name))
        return name

    def op(self, name: str, *args: str, **attrs: Any) -> str:
        out = self.fresh(name.lower())
        self.emit(name, list(args), out, **attrs)
        return out

    def emit(self, name: str, args: list[str], out: str, **attrs: Any) -> None:
        """Append the node ``out = name(args)`` (opset 17: the ``axes`` of a ReduceMean an attribute,
        the ``shape`` of a Reshape an int64 operand)."""
        from onnx import helper, numpy_helper

        if name == "Reshape":
            operand = self.fresh("shape")
            self.b.extra.append(numpy_helper.from_array(np.asarray(attrs.pop("shape"), np.int64).reshape(-1), operand))
            args = [*args, operand]
        if name == "ReduceMean":
            attrs["axes"] = [int(v) for v in attrs["axes"]]
        self.b.nodes.append(helper.make_node(name, args, [out], name=self.fresh(f"{name}_node"), **attrs))

    def cast(self, tensor: str, to: int, out: str | None = None) -> str:
        from onnx import helper

        out = out or self.fresh("cast")
        self.b.nodes.append(helper.make_node("Cast", [tensor], [out], name=self.fresh("Cast_node"), to=to))
        return out


def to_onnx(builder: ExportBuilder, node: Node, wide: bool, formula: Formula, n_inputs: int = 1) -> None:
    """Write ``node`` as the ONNX nodes of ``formula(backend, *inputs)``: in float64 directly when
    ``wide`` (the tensors already are float64), else between a Cast to float64 and one back."""
    from onnx import TensorProto

    be = OnnxBackend(builder, node, np.float64)
    inputs = list(node.inputs[:n_inputs])
    if not wide:
        inputs = [be.cast(t, TensorProto.DOUBLE) for t in inputs]
    result = formula(be, *inputs)
    if wide:
        be.emit("Identity", [result], node.outputs[0])
    else:
        be.cast(result, TensorProto.FLOAT, node.outputs[0])


def output_shape(builder: ExportBuilder, node: Node) -> tuple[int, ...]:
    """The static output shape of ``node`` as the exported graph holds it (the float64 copy that
    ``model.cim.onnx`` writes keeps the node's name, not its tensors)."""
    return builder.graph.shape(builder.graph.node(node.name).outputs[0])


def in_float64(formula: Formula, ins: list[np.ndarray]) -> np.ndarray:
    """``formula`` computed in float64 on ``ins``, returned in the first input's dtype."""
    be = NumpyBackend(np.float64)
    out = formula(be, *(np.asarray(x, np.float64) for x in ins))
    return np.asarray(out).astype(ins[0].dtype)


def polynomial(be: Backend[T], x: T, coefs: Sequence[float]) -> T:
    """``Σ_k coefs[k] · x^k`` by Horner's rule."""
    acc = be.const(coefs[-1])
    for c in coefs[-2::-1]:
        acc = be.add(be.const(c), be.mul(x, acc))
    return acc


def expm1(be: Backend[T], x: T) -> T:
    """``eˣ − 1`` without cancellation: ``x · (1 + x/2 + x²/6 + x³/24 + x⁴/120)`` for ``|x| < 10⁻³``
    (the next term is below 10⁻¹⁸ of the result), ``Exp(x) − 1`` beyond."""
    series = be.mul(x, polynomial(be, x, (1.0, 1 / 2, 1 / 6, 1 / 24, 1 / 120)))
    return be.where_less(be.op("Abs", x), be.const(1e-3), series, be.sub(be.op("Exp", x), be.const(1.0)))


def log1p(be: Backend[T], t: T) -> T:
    """``ln(1 + t)`` for ``t ≥ 0`` without the rounding of ``1 + t``: ``t · (1 − t/2 + t²/3 − t³/4 + t⁴/5)``
    for ``t < 10⁻⁴`` (error below 10⁻²⁰ relative), ``Log(1 + t)`` beyond."""
    series = be.mul(t, polynomial(be, t, (1.0, -1 / 2, 1 / 3, -1 / 4, 1 / 5)))
    return be.where_less(t, be.const(1e-4), series, be.op("Log", be.add(be.const(1.0), t)))


def normalise(be: Backend[T], x: T, axes: Sequence[int], epsilon: float) -> T:
    """``(x − μ) / √(σ² + ε)`` with ``μ``, ``σ²`` the mean and (biased) variance over ``axes``."""
    d = be.sub(x, be.op("ReduceMean", x, axes=tuple(axes), keepdims=1))
    var = be.op("ReduceMean", be.mul(d, d), axes=tuple(axes), keepdims=1)
    return be.div(d, be.op("Sqrt", be.add(var, be.const(epsilon))))


def chebyshev(be: Backend[T], y: T, coefs: Sequence[float]) -> T:
    """``Σ_k coefs[k] · T_k(y)`` for ``y`` in [−1, 1] (``Backend.chebyshev``)."""
    return be.chebyshev(y, coefs)
