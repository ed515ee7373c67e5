"""The numpy reference of a compiled model: CIM layers by the numerical contract
(``cimc.quant.numerics``), digital ops by the interpreter's kernels under one rounding rule per op.

A CIM layer (``run_layer``) is vectorised over batch, pixels and segments::

    a_q           = quantize(x, S_A, a_bits, a_signed)                 (N, C, H, W)
    cols[g, m, r] = im2col of the zero-padded codes (m = n·Ho·Wo + h·Wo + w)
    p[n,s,o,h,w]  = Σ_{r ∈ segment s} w_q[o, r] · cols[g(o), m, r]     one batched matmul
    p̂             = adc_codes(p, S_ADC, adc_bits)                      (N, S, Cout, Ho, Wo)
    P             = Σ_s p̂                                             (N, Cout, Ho, Wo)
    y             = P · scale + b'                                     (``CimSpec``)

A bit-sliced layer (``cimc.quant.slicing``) runs its ``T`` input digits as ``T`` batches and its
``S`` weight digits as ``S`` adjacent columns per output channel, in the same one matmul; the
ADC codes then have ``segments·T·S`` conversions on axis 1, in the order ``(s, t, j)``, each
kind ``(t, j)`` at its step ``S_ADC·2^−m_{t,j}``, and ``P = Σ_k conversion_weights[k] · p̂_k``.

All products and sums are of small integers, exact in float32 (``|P| < 2^24``, checked by
the quantize pass).

Digital ops: ops that are one IEEE operation per element (Relu, MaxPool, Add, Concat, …)
run in float32 and agree bit for bit with any engine. Reductions and transcendental ops
(``OpDef.double`` in ``cimc.ops``) run in float64 and round once to float32, so engines that
sum in another order still agree (the float64 sums are almost always exact). ``model.cim.onnx`` casts
around the same ops; AveragePool, LRN and a digital Conv have no float64 kernel in
onnxruntime and stay float32 (they may differ in the last bit).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from cimc.errors import InvalidModelError, UnsupportedError
from cimc.ir.annotations import CimLayer, QuantParams
from cimc.ir.graph import Graph
from cimc.ops import find
from cimc.ops.windows import CONV_WORKSPACE_BYTES, conv_chunks, windows
from cimc.quant import numerics, slicing
from cimc.quant.batching import batch_chunks, batch_generic
from cimc.quant.blas import single_blas_thread
from cimc.quant.cim_layer import CimSpec, cim_spec


@dataclass(frozen=True)
class LayerTrace:
    """What one CIM layer computed: input codes (the input's shape), ADC codes
    ``(L, K, Cout[, Ho, Wo])`` with ``K = segments·T·S`` conversions (order ``(s, t, j)``),
    accumulated sums ``P`` and outputs ``y`` (the output's shape)."""

    input_codes: np.ndarray
    adc_codes: np.ndarray
    sums: np.ndarray
    outputs: np.ndarray


@dataclass(frozen=True)
class CompiledRun:
    outputs: dict[str, np.ndarray]
    traces: dict[str, LayerTrace]


def segment_index(bounds: tuple[int, ...] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers ``(S, Rmax)`` of every segment (padded with 0) and the mask of real rows."""
    b = np.asarray(bounds, dtype=np.int64)
    rows = np.diff(b)
    offsets = np.arange(int(rows.max()))
    mask = offsets[None, :] < rows[:, None]
    return np.where(mask, b[:-1, None] + offsets[None, :], 0), mask


def _windows(a: np.ndarray, spec: CimSpec) -> np.ndarray:
    """The strided view ``(N, C, Ho, Wo, kh, kw)`` of every window of the zero-padded input."""
    t, l, b, r = spec.pads
    padded = np.pad(a, ((0, 0), (0, 0), (t, b), (l, r))) if any(spec.pads) else a
    return windows(padded, spec.kernel, spec.strides, spec.dilations)


def im2col(a: np.ndarray, spec: CimSpec) -> tuple[np.ndarray, int, int]:
    """``(G, N·Ho·Wo, rows)`` windows of the zero-padded input, with ``Ho, Wo``."""
    win = _windows(a, spec)
    return _columns(win, spec), *win.shape[2:4]


def _columns(win: np.ndarray, spec: CimSpec) -> np.ndarray:
    """The window view ``(N, C, Ho, Wo, kh, kw)`` as the im2col matrix ``(G, N·Ho·Wo, rows)``."""
    n, _, ho, wo = win.shape[:4]
    g, kh, kw = spec.groups, *spec.kernel
    cols = win.reshape(n, g, spec.cin_g, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    return cols.reshape(g, n * ho * wo, spec.rows)


def im2col_at(a: np.ndarray, spec: CimSpec, pixels: np.ndarray) -> np.ndarray:
    """``im2col(a, spec)[0][:, pixels]`` without forming the other windows: ``(G, len(pixels), rows)``
    for flat output-pixel indices ``pixels`` into ``N·Ho·Wo`` (the calibration's subsample)."""
    win = _windows(a, spec)
    ho, wo = win.shape[2:4]
    image, rest = np.divmod(pixels, ho * wo)
    cols = win[image, :, rest // wo, rest % wo]  # (M, C, kh, kw): only these windows are copied
    g, m = spec.groups, len(pixels)
    return cols.reshape(m, g, spec.rows).transpose(1, 0, 2)


def by_segment(mat: np.ndarray, bounds: tuple[int, ...]) -> np.ndarray:
    """``(…, rows)`` → ``(…, S, Rmax)``: row ``bounds[s] + t`` at ``[…, s, t]``, zero-padded (a
    gather: ``segment_matmul`` reads uniform segments as views and never asks for them)."""
    idx, mask = segment_index(bounds)
    return np.where(mask, mat[..., idx], np.float32(0))


def segment_matmul(cols: np.ndarray, codes: np.ndarray, spec: CimSpec) -> np.ndarray:
    """``p[g, s, m, o] = Σ_{r ∈ segment s} cols[g, m, r] · w_q[g·Cout_g + o, r]``: (G, S, M, Cout_g).

    Uniform segments (all but the last of ``Rmax`` rows, what tiling makes) are strided views
    of ``cols`` and of the weights, neither padded nor copied: each ``(M, Rmax)`` block of
    ``cols`` has unit column stride and each ``(Rmax, Cout_g)`` block of the weights unit row
    stride, which BLAS reads in place (a leading dimension, or a transposed operand). The full
    segments are one stacked product; a shorter last segment a second. Other bounds gather
    their rows (``by_segment``)."""
    g, cout_g = spec.groups, spec.cout // spec.groups
    wmat = codes.reshape(g, cout_g, spec.rows)
    s, rmax = segment_index(spec.bounds)[0].shape
    with single_blas_thread():
        if not np.array_equal(np.asarray(spec.bounds[:-1]), np.arange(s) * rmax):
            return np.matmul(by_segment(cols, spec.bounds).transpose(0, 2, 1, 3),
                             by_segment(wmat, spec.bounds).transpose(0, 2, 3, 1))
        m, full = cols.shape[1], spec.rows // rmax  # full: segments of Rmax rows
        p = np.empty((g, s, m, cout_g), dtype=np.result_type(cols, codes))
        head = full * rmax
        np.matmul(cols[..., :head].reshape(g, m, full, rmax).transpose(0, 2, 1, 3),
                  wmat[..., :head].reshape(g, cout_g, full, rmax).transpose(0, 2, 3, 1), out=p[:, :full])
        if full < s:
            np.matmul(cols[:, None, :, head:], wmat[:, None, :, head:].transpose(0, 1, 3, 2), out=p[:, full:])
        return p


def segment_sums(a_q: np.ndarray, codes: np.ndarray, spec: CimSpec) -> np.ndarray:
    """Exact integer partial sums ``p`` of shape ``(N, S, Cout, Ho, Wo)`` (see module doc).

    Computed in chunks of images or output rows (``conv_chunks``) whose im2col workspace is
    about ``CONV_WORKSPACE_BYTES``; the sums are exact integers, so chunks change no bit."""
    n, g, s = a_q.shape[0], spec.groups, spec.num_segments
    win = _windows(a_q, spec)
    ho, wo = win.shape[2:4]
    p = np.empty((n, s, spec.cout, ho, wo), dtype=np.result_type(a_q, codes))
    # one output row: its windows, their per-segment copies (padded, contiguous) and its sums twice
    row_bytes = wo * p.itemsize * (3 * g * spec.rows + 2 * s * spec.cout)
    for (n0, n1), (h0, h1) in conv_chunks(n, ho, row_bytes, CONV_WORKSPACE_BYTES):
        m, rows = n1 - n0, h1 - h0
        part = segment_matmul(_columns(win[n0:n1, :, h0:h1], spec), codes, spec)  # (G, S, m·rows·Wo, Cout_g)
        p[n0:n1, :, :, h0:h1] = part.reshape(g, s, m, rows, wo, spec.cout // g).transpose(2, 1, 0, 5, 3, 4).reshape(
            m, s, spec.cout, rows, wo)
    return p


def as_conv_input(x: np.ndarray, spec: CimSpec) -> np.ndarray:
    """A Gemm/MatMul input ``(…, K)`` as ``(L, K, 1, 1)``; a conv input unchanged."""
    return x if spec.kind == "conv" else x.reshape(-1, x.shape[-1], 1, 1)


def sliced_sums(a_q: np.ndarray, codes: np.ndarray, spec: CimSpec) -> np.ndarray:
    """Exact partial sums of every conversion, ``(N, segments·T·S, Cout, Ho, Wo)`` in the
    order ``(s, t, j)`` (module doc); ``segment_sums`` itself when the layer is unsliced."""
    q = spec.q
    if q.w_slices == 1 and q.a_slices == 1:
        return segment_sums(a_q, codes, spec)
    a_dig = slicing.digits(a_q, q.a_bits, q.dac_bits, q.a_signed)  # (T, N, C, H, W)
    (ns, cout), (nt, n) = (q.w_slices, codes.shape[0]), a_dig.shape[:2]
    wide = slicing.digit_columns(codes, q.w_bits, q.cell_bits, q.w_digits)  # (Cout·S, Cin_g, kh, kw)
    p = segment_sums(a_dig.reshape(nt * n, *a_q.shape[1:]), wide, replace(spec, weight=wide))
    p = p.reshape(nt, n, spec.num_segments, cout, ns, *p.shape[3:])  # (T, N, Seg, Cout, S, Ho, Wo)
    p = np.moveaxis(p, (0, 4), (2, 3))  # (N, Seg, T, S, Cout, Ho, Wo)
    return np.ascontiguousarray(p).reshape(n, -1, cout, *p.shape[5:])


def sliced_adc(p: np.ndarray, spec: CimSpec) -> np.ndarray:
    """ADC codes of every conversion in place: step ``S_ADC · 2^−m_{t,j}`` (``cimc.quant.slicing``)."""
    q = spec.q
    if q.w_slices == 1 and q.a_slices == 1:
        return numerics.adc_codes(p, q.adc_step, q.adc_bits, channel_axis=2, out=p)
    kinds = q.w_slices * q.a_slices
    steps = np.tile(slicing.conversion_steps(q.adc_step, q.adc_shift, kinds), (spec.num_segments, 1))
    return numerics.quantize(p, steps.reshape(1, *steps.shape, *(1,) * (p.ndim - 3)), q.adc_bits, True, out=p)


def recombine(adc: np.ndarray, spec: CimSpec) -> np.ndarray:
    """``P = Σ_k 2^(j·c + t·dac − m_{t,j}) · p̂_k`` over axis 1 (a plain sum without slicing)."""
    q = spec.q
    if q.w_slices == 1 and q.a_slices == 1:
        return adc.sum(axis=1, dtype=np.float32)
    weights = slicing.conversion_weights(spec.num_segments, q.a_bits, q.dac_bits, q.w_bits, q.cell_bits,
                                         q.adc_shift)
    shaped = weights.reshape((1, -1) + (1,) * (adc.ndim - 2))
    return np.multiply(adc, shaped, dtype=np.float32).sum(axis=1, dtype=np.float32)


def run_layer(x: np.ndarray, spec: CimSpec, codes: np.ndarray | None = None) -> LayerTrace:
    """Execute one CIM layer on float input ``x`` by the contract (module doc)."""
    q = spec.q
    a_q = numerics.quantize(as_conv_input(x, spec), q.a_step, q.a_bits, q.a_signed)
    p = sliced_sums(a_q, spec.codes() if codes is None else codes, spec)
    adc = sliced_adc(p, spec)
    total = recombine(adc, spec)
    y = numerics.layer_output(total, spec.scale(), spec.applied_bias())
    if spec.kind == "conv":
        return LayerTrace(a_q, adc, total, y)
    lead = x.shape[:-1]
    return LayerTrace(a_q.reshape(x.shape), adc.reshape(adc.shape[:3]), total.reshape(*lead, spec.cout),
                      y.reshape(*lead, spec.cout))


def digital_op(op: str, args: list[np.ndarray], attrs: Mapping[str, Any]) -> np.ndarray:
    """A digital op under the reference's rounding rule (float64 for the ``OpDef.double`` ops)."""
    found = find(op)
    if found is None:
        raise UnsupportedError(f"no kernel for digital op {op}")
    kernel = found.kernel
    if found.double:  # a promoting kernel casts its weights itself (no float64 copy of a large weight)
        keep = set(found.weight_inputs) if found.promotes else set()
        wide = [a if i in keep else np.asarray(a, dtype=np.float64) for i, a in enumerate(args)]
        return np.asarray(kernel(wide, dict(attrs)), dtype=np.float32)
    return kernel(args, dict(attrs))


def is_quantized_cim(node: Any) -> bool:
    return CimLayer in node.ann and QuantParams in node.ann


#: ``(seed, scale)`` of the random batches on which a compiled model must compute finite
#: outputs (the compile's last check) and the emulator equal onnxruntime (``cimc validate``).
PROBES = ((0, 1.0), (1, 8.0))


def probe_feeds(shapes: Mapping[str, Sequence[int]], seed: int, scale: float) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs times ``scale``, each of its input's static shape.

    The model's own shapes, not a batch size put on axis 0 of every input: an input that
    broadcasts against another (a ``(3, 1)`` operand of an Add on ``(2, 3, 4)``) does not carry
    the batch, and a batch on its axis 0 would not broadcast."""
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(tuple(shape)) * scale).astype(np.float32) for name, shape in shapes.items()}


def run_compiled(graph: Graph, feeds: Mapping[str, np.ndarray], *, record: bool = False,
                 keep: Collection[str] = ()) -> CompiledRun:
    """Run the compiled model: quantized CIM layers by the contract, the rest digital.

    CIM nodes without ``QuantParams`` run as float ops. ``record`` keeps a ``LayerTrace``
    per CIM layer; ``keep`` names tensors returned in ``outputs`` besides the graph's (a
    layer's output without its trace's codes and partial sums). Any batch size works
    (``cimc.quant.batching``)."""
    missing = [name for name in graph.inputs if name not in feeds]
    if missing:
        raise InvalidModelError(f"missing input(s): {', '.join(missing)}")
    chunks = batch_chunks(graph, {k: np.asarray(v) for k, v in feeds.items()})
    if len(chunks) > 1:
        return concat_runs([_run_compiled(graph, chunk, record, keep) for chunk in chunks])
    return _run_compiled(graph, feeds, record, keep)


def concat_runs(runs: list[CompiledRun]) -> CompiledRun:
    """One ``CompiledRun`` from runs over consecutive chunks of a batch."""
    outputs = {k: np.concatenate([r.outputs[k] for r in runs]) for k in runs[0].outputs}
    traces = {k: LayerTrace(*(np.concatenate([getattr(r.traces[k], f.name) for r in runs])
                              for f in fields(LayerTrace))) for k in runs[0].traces}
    return CompiledRun(outputs, traces)


def _run_compiled(graph: Graph, feeds: Mapping[str, np.ndarray], record: bool,
                  keep: Collection[str] = ()) -> CompiledRun:
    generic = batch_generic(graph)
    values: dict[str, np.ndarray] = dict(generic.initializers)
    values.update({k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})
    traces: dict[str, LayerTrace] = {}
    order = generic.topo_order()
    last = {t: step for step, node in enumerate(order) for t in node.inputs}
    for step, node in enumerate(order):
        if is_quantized_cim(node):
            trace = run_layer(values[node.inputs[0]], cim_spec(generic, node))
            values[node.outputs[0]] = trace.outputs
            if record:
                traces[node.name] = trace
        else:
            values[node.outputs[0]] = digital_op(node.op, [values[t] for t in node.inputs if t], node.attrs)
        for t in node.inputs:  # free what no later node reads
            if last.get(t) == step and t not in graph.outputs and t not in generic.initializers and t not in keep:
                values.pop(t, None)
    return CompiledRun({name: values[name] for name in [*graph.outputs, *keep]}, traces)
