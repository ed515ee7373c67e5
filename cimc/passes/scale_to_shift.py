"""scale-to-shift: replace each CIM layer's output scale ``s = S_W·S_ADC·S_A`` by a power of two.

``k = numerics.shift_exponent(s)`` picks the ``2^−k`` of least relative error
``ε = |2^−k − s| / s`` (per layer, or per column when the steps are), so the digital
periphery computes ``y = P · 2^−k + b'`` with a shifter instead of a multiplier. What remains,
``r = s · 2^k`` (``1/√2 < r ≤ √2`` roughly), is folded where it can be (``fold=True``):

* ``"activation"``: when ``s`` is one number per layer and the output reaches only CIM
  layers through positively homogeneous ops (Relu, LeakyRelu, pools, reshapes, slices, zero
  padding, products with a constant: ``Mul(y, k)``, ``Div(y, k)``) and Clips with constant
  bounds, those readers quantize ``y / r`` with step ``S_A' = S_A / r`` — the same codes — and
  the layer adds ``b' = b / r``: exact up to float rounding (``Shift.gain = g = 1/r``). A Clip
  on the way (ReLU6 is ``Clip(0, 6)``) is not homogeneous, but
  ``Clip(lo, hi)(y) = Clip(g·lo, g·hi)(g·y) / g`` for ``g > 0``: its bounds become
  ``fl32(g·lo)``, ``fl32(g·hi)`` (``ScaledBounds`` keeps ``lo``, ``hi`` for the float
  model). Every engine runs the scaled Clip, so they agree bit for bit; against the float
  model the bounds move by their float32 rounding (≤ ½ ulp), below the shift's own rounding;
* ``"lut"``: when ``s`` is one number per layer and the output is read only by an activation —
  elementwise ops computing one function ``f`` of it alone, at least one of them neither
  homogeneous nor a Clip (``Sigmoid``; SiLU, ``Mul(y, Sigmoid(y))``) — the layer likewise outputs
  ``g·y`` (``b' = b / r``) and a ``Mul(·, fl32(r))`` (``ActivationScale``) is put before the
  activation: in hardware the activation is a lookup table on the layer's output code, whose
  input scale ``r`` costs nothing (the table holds ``f(r·z)``); the engines compute that
  product in float32, so ``f`` sees ``y`` up to one rounding, like an unshifted layer's output;
* ``"stream"``: when the output meets other CIM layers' outputs at an ``Add``/``Sub`` (a residual
  stream, ``shift_streams``: the projection convs of a stage and the layer producing its first
  input), read in the end only by CIM layers, all those layers output ``g·y`` with one gain
  ``g`` and no multiplier at the Add: each one's ADC step becomes ``S_ADC' = S_ADC · 2^−k / (g·s)``
  and the stream's readers quantize with ``S_A·g`` (its Clips with bounds times ``g``), the
  layers' biases become ``g·b``. ``g`` and each ``k`` are chosen together by the
  calibration partial sums' squared conversion error in output units (``stream_fold``):
  ``g = 1`` is the ``"adc"`` fold of each layer alone, other gains move the steps less;
* ``"adc"``: otherwise the ADC step becomes ``S_ADC' = S_ADC · 2^−k / s``, so
  ``S_W·S_ADC'·S_A = 2^−k`` exactly (an ADC's reference is an analog setting): of the two
  powers of two around ``s``, the one whose step quantizes the layer's calibration partial
  sums with less squared error (per column when the scale is), else the one above ``s``
  (the ADC range grows, never clipping more). The calibration inputs are quantize's, or, for
  layers whose steps came with the model (QAT), collected by this pass from the same batch.
  With ``--bias-correction`` the layer's bias then moves by the change of its mean output on
  that input (``bias_correction.refolded_bias``), which the new ADC step would otherwise add
  (a ``"stream"`` member's too);

* ``"none"`` (``fold=False``, the paper's approximation): ``y`` carries the error ``ε``.

Layers are taken in topological order; a reader whose input arrives multiplied by ``g`` (its
producer folded ``1/r`` into it) has the true scale ``s = S_W·S_ADC·S_A' / g``.

Each layer's ``Shift`` records ``k``, ``s``, ``ε``, the fold and the SQNR of its output
(divided by ``gain``) against the unshifted model on a few calibration samples:
``SQNR = 10·log10(Σ y² / Σ (y' − y)²)``. Layers that already have a ``Shift`` are kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cimc.data.preprocess import DEFAULT as DEFAULT_PREPROCESS
from cimc.data.preprocess import Preprocess
from cimc.errors import MappingError
from cimc.ir.annotations import ActivationScale, CimLayer, QuantParams, ScaledBounds, Shift
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo
from cimc.mapping.select import cim_nodes
from cimc.ops import find
from cimc.passes.context import ShiftReport
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.quantize import calibration_batch, has_own_bias, set_bias
from cimc.passes.registry import register
from cimc.passes.shift_streams import Stream, constant_product, homogeneous, residual_stream, scalable_clip
from cimc.quant import numerics, slicing
from cimc.quant.bias_correction import refolded_bias
from cimc.quant.blas import single_blas_thread
from cimc.quant.calibration import DEFAULT_SIZE, partial_sums, stream_inputs
from cimc.quant.cim_layer import cim_spec
from cimc.quant.reference import run_compiled
from cimc.quant.step_search import squared_errors


@register
@dataclass(frozen=True)
class ScaleToShift(GraphPass):
    name = "scale-to-shift"
    needs = ("quantize",)
    fold: bool = True
    calib: str = "synthetic"
    calib_size: int = DEFAULT_SIZE
    data_root: str | None = None
    preprocess: Preprocess = DEFAULT_PREPROCESS
    sqnr_samples: int = 2
    bias_correction: bool = False

    @classmethod
    def from_options(cls, options: Any) -> ScaleToShift:
        return cls(calib=options.calib, calib_size=options.calib_size, data_root=options.data_root,
                   preprocess=Preprocess.from_options(options.image_size, options.mean, options.std),
                   bias_correction=options.bias_correction)

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        missing = [n.name for n in cim_nodes(graph) if QuantParams not in n.ann]
        if missing:
            raise MappingError(f"scale-to-shift needs quantize first (unquantized: {', '.join(missing[:5])})")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        todo = [n for n in cim_nodes(out) if Shift not in n.ann]
        gains: dict[str, float] = {}
        inputs = self._inputs(graph, [n for n in todo if self.fold and may_fold_at_adc(out, n)], ctx)
        streams = residual_streams(out, todo) if self.fold else {}
        plans: dict[str, StreamFold] = {}
        with single_blas_thread():
            for node in todo:
                def calibration(name: str = node.name) -> np.ndarray | None:
                    x = inputs.get(name)
                    if x is None:  # a fold not foreseen (a Clip scaled by an earlier layer)
                        x = self._inputs(graph, [out.node(name)], ctx).get(name)
                    return x

                stream = streams.get(node.name)
                if stream is not None and node.name not in plans:  # the stream's first member
                    plan = stream_fold(graph, stream, calibration)
                    plans.update(dict.fromkeys((m.name for m in stream.members), plan))
                    gains.update(fold_stream(stream, plan.gain))
                gains.update(shift_layer(out, node, self.fold, gains.get(node.name, 1.0), calibration,
                                         self.bias_correction, plans.get(node.name)))
                inputs.drop(node.name)
        if todo and self.sqnr_samples > 0:
            self._measure(graph, out, todo, ctx)
        return PassResult(out, bool(todo))

    def _inputs(self, graph: Graph, todo: list[Node], ctx: PassContext) -> LayerInputs:
        """The float calibration input of each layer of ``todo``: quantize's
        (``ctx.calibration_inputs``), or, when quantize streamed them and did not keep it, recomputed
        from the float graph it ran (``ctx.calibration_graph``, the same values); for layers whose
        steps came with the model (QAT), collected here from the same calibration batch, so that
        an ADC fold picks its power of two from data whatever the steps' origin."""
        inputs = LayerInputs({n.name: ctx.calibration_inputs[n.name] for n in todo if n.name in ctx.calibration_inputs})
        missing = [n.name for n in todo if n.name not in inputs.ready]
        if not missing or self.calib_size <= 0:
            return inputs
        cal = calibration_batch(ctx, graph, self.calib, self.calib_size, self.data_root, self.preprocess)
        streamed = set(ctx.quantize.calibrated_layers) if ctx.quantize and ctx.calibration_graph else set()
        for source, names in ((ctx.calibration_graph, [n for n in missing if n in streamed]),
                              (graph, [n for n in missing if n not in streamed])):
            if names and source is not None:
                inputs.add(stream_inputs(source, cal.feeds, names), names)
        return inputs

    def _measure(self, before: Graph, after: Graph, todo: list[Node], ctx: PassContext) -> None:
        cal = calibration_batch(ctx, before, self.calib, max(self.calib_size, self.sqnr_samples), self.data_root,
                                self.preprocess)
        feeds = cal.take(self.sqnr_samples)
        layers = [node.outputs[0] for node in todo]  # their outputs only: no codes or partial sums kept
        ref = run_compiled(before, feeds, keep=layers)
        got = run_compiled(after, feeds, keep=layers)
        for node in todo:
            shift = node.ann[Shift]
            y = got.outputs[node.outputs[0]] / np.float32(shift.gain)
            node.ann.put(replace(shift, sqnr_db=sqnr_db(ref.outputs[node.outputs[0]], y)))
        outputs = [sqnr_db(ref.outputs[t], got.outputs[t]) for t in before.outputs]
        ctx.shift = ShiftReport(min(outputs, default=math.inf), int(feeds[before.inputs[0]].shape[0]))


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """``10·log10(Σ ref² / Σ (test − ref)²)`` in float64; ``inf`` when identical."""
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(((np.asarray(test, dtype=np.float64) - ref) ** 2).sum())
    signal = float((ref**2).sum())
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


class LayerInputs:
    """Layers' float calibration inputs: given ones (``ready``), and streams of
    ``calibration.stream_inputs`` read only as far as a requested layer (the layers between are
    kept until asked for or dropped), so scale-to-shift holds few inputs at a time."""

    def __init__(self, ready: dict[str, np.ndarray]) -> None:
        self.ready = ready
        self.streams: list[tuple[Iterator[tuple[str, np.ndarray]], set[str]]] = []

    def add(self, stream: Iterator[tuple[str, np.ndarray]], names: list[str]) -> None:
        self.streams.append((stream, set(names)))

    def get(self, name: str) -> np.ndarray | None:
        for stream, names in self.streams:
            while name in names and name not in self.ready:
                item = next(stream, None)
                if item is None:
                    break
                if item[0] in names:  # still wanted: not dropped before its input came
                    self.ready[item[0]] = item[1]
        return self.ready.get(name)

    def drop(self, name: str) -> None:
        for _, names in self.streams:
            names.discard(name)
        self.ready.pop(name, None)


def may_fold_at_adc(graph: Graph, node: Node) -> bool:
    """Whether ``shift_layer`` may fold ``node``'s remainder into its ADC step (and so read its
    calibration input): a per-column scale, or no reader layer or activation to fold it into.
    Only which inputs scale-to-shift computes ahead depends on it; ``shift_layer`` decides."""
    q = node.ann[QuantParams]
    return numerics.output_scale(q.w_step, q.adc_step, q.a_step).size != 1 or (
        fold_targets(graph, node) is None and lut_readers(graph, node) is None)


def shift_layer(graph: Graph, node: Node, fold: bool, input_gain: float = 1.0,
                calibration: np.ndarray | Callable[[], np.ndarray | None] | None = None,
                bias_correction: bool = False, stream: StreamFold | None = None) -> dict[str, float]:
    """Annotate ``node`` with its ``Shift`` and fold the remainder (module doc).

    ``input_gain`` is ``g`` when the layer's input arrives multiplied by ``g`` (its producer
    folded into this layer's ``S_A``): its true scale is then ``S_W·S_ADC·S_A / g``.
    ``calibration`` (the layer's float calibration input, or a function returning it, called
    only by an ADC fold) lets an ADC fold pick the better of
    the two powers of two around ``s``; with ``bias_correction`` (quantize corrected the bias), an
    ADC fold also moves the bias by the change of the mean output on it
    (``bias_correction.refolded_bias``). ``stream``: the layer is a member of a residual stream
    whose gain and this layer's ``k`` were chosen (``stream_fold``); its ADC step takes what is
    left, ``S_ADC' = S_ADC · 2^−k / (g·s)``, so it outputs ``g·y`` (the readers' steps were
    scaled by ``fold_stream``). Returns the input gains given to reader layers."""
    q = node.ann[QuantParams]
    exact = numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64) / input_gain
    k = numerics.shift_exponent(exact)
    error = float(np.max(np.abs(numerics.shift_scale(k) / exact - 1.0)))
    mode, gain, readers, before, x = "none", 1.0, None, None, None
    if fold and stream is not None:
        x = calibration() if callable(calibration) else calibration
        x = None if x is None else x * np.float32(input_gain)
        if bias_correction and x is not None and has_own_bias(node):
            before = cim_spec(graph, node)
        k, gain = stream.k[node.name], stream.gain
        adc = (q.adc_step.astype(np.float64) * (numerics.shift_scale(k) / (gain * exact))).astype(np.float32)
        adc.flags.writeable = False
        node.ann.put(replace(q, adc_step=adc))
        mode = "stream"
    elif fold and error > 0:
        targets = fold_targets(graph, node) if exact.size == 1 else None
        table = lut_readers(graph, node) if exact.size == 1 and targets is None else None
        if targets is not None:
            readers = targets.readers
            gain = _fold_activation(readers, float(exact[0] / numerics.shift_scale(k)[0]))
            _scale_clips(targets.clips, gain)
            mode = "activation"
        elif table is not None:
            gain = _fold_lut(graph, node, float(exact[0] / numerics.shift_scale(k)[0]))
            mode = "lut"
        else:
            x = calibration() if callable(calibration) else calibration
            x = None if x is None else x * np.float32(input_gain)
            if bias_correction and x is not None and has_own_bias(node):
                before = cim_spec(graph, node)
            k, adc = adc_fold(graph, node, exact, x)
            node.ann.put(replace(q, adc_step=adc))
            mode = "adc"
    k.flags.writeable = False
    exact32 = exact.astype(np.float32)
    exact32.flags.writeable = False
    node.ann.put(Shift(k, exact32, error, None, mode, gain))
    if before is not None and x is not None:
        set_bias(graph, node, refolded_bias(before, cim_spec(graph, node), x, exact, gain))
    return {reader.name: gain for reader in readers or ()}


def residual_streams(graph: Graph, todo: list[Node]) -> dict[str, Stream]:
    """The residual stream (``shift_streams``) of each layer of ``todo`` in one whose members
    all are in ``todo`` and have one scale per layer or per column."""
    streams: dict[str, Stream] = {}
    names = {n.name for n in todo}
    for node in todo:
        if node.name in streams:
            continue
        stream = residual_stream(graph, node)
        if stream is not None and all(m.name in names for m in stream.members):
            streams.update(dict.fromkeys((m.name for m in stream.members), stream))
    return streams


#: output positions (rows of the partial sums) over which ``stream_fold`` sums a member's errors
STREAM_SEARCH_ROWS = 16384


@dataclass(frozen=True)
class StreamFold:
    """A residual stream's gain ``g`` and each member's shift exponent ``k`` (by name)."""

    gain: float
    k: dict[str, np.ndarray]


def stream_fold(graph: Graph, stream: Stream, calibration: Callable[[str], np.ndarray | None],
                grid: int = 32) -> StreamFold:
    """The gain ``g`` shared by the stream's members, and each member's ``k``, that quantize the
    members' calibration partial sums with the least squared error in output units.

    A member of true scale ``s`` (per layer or column) outputting ``g·y`` converts with ADC step
    ``S_ADC·2^−k/(g·s)``: for a given ``g`` the ``k`` of the power of two above ``g·s`` or the
    one below, whichever quantizes its partial sums ``P`` better (as ``adc_fold``). Each
    member's error ``Σ (P − Q(P))²`` is weighted by ``(s/S_ADC)²`` (partial-sum units to output
    units: the errors add up in the same stream). Candidates: ``g = 1`` (each member folding its
    own remainder, the ``adc`` fold, kept on ties), the ``g`` that make one member's scale a
    power of two (that member exact, no ADC change), and ``grid`` gains ``2^u``,
    ``u ∈ [−½, ½)``; ``g`` is taken in ``[2^−½, 2^½)`` (a power of two more is a shift). A
    member without calibration input counts no error and takes the power of two above.
    ``graph`` holds the members' steps before any fold (the pass's input), ``calibration(name)``
    their float inputs; each member's errors are summed over at most ``STREAM_SEARCH_ROWS`` of
    its output positions (every ``j``-th), the search costing two conversions of them per candidate."""
    scales = {m.name: _true_scale(graph.node(m.name)) for m in stream.members}
    exact_points = [-np.log2(s[0]) for s in scales.values() if s.size == 1]
    u = np.concatenate([[0.0], np.mod(np.asarray(exact_points) + 0.5, 1.0) - 0.5, np.arange(grid) / grid - 0.5])
    gains = 2.0 ** u
    total = np.zeros(gains.size)
    ks = {}
    for m in stream.members:
        node, s = graph.node(m.name), scales[m.name]
        q = node.ann[QuantParams]
        k_up = ceil_exponent(gains[:, None] * s[None, :])  # (G, C)
        step_up = q.adc_step.astype(np.float64) * (numerics.shift_scale(k_up) / (gains[:, None] * s[None, :]))
        x = calibration(m.name)
        if x is None:
            ks[m.name] = k_up
            continue
        p = layer_partial_sums(graph, node, x)
        p = p[::max(1, -(-p.shape[0] // STREAM_SEARCH_ROWS))]  # every j-th row: at most STREAM_SEARCH_ROWS
        up, down = conversion_errors(p, step_up, q), conversion_errors(p, step_up / 2, q)
        ks[m.name] = np.where(down < up, k_up + 1, k_up)
        weight = (s / q.adc_step.astype(np.float64)) ** 2
        total += (np.minimum(up, down) * weight).sum(axis=1)
    best = int(np.argmin(total))
    k = {}
    for name, choice in ks.items():
        ki = choice[best].astype(np.int64)
        ki.flags.writeable = False
        k[name] = ki
    return StreamFold(float(gains[best]), k)


def _true_scale(node: Node) -> np.ndarray:
    """``S_W·S_ADC·S_A`` of a layer before scale-to-shift (float64, ``(1,)`` or ``(Cout,)``)."""
    q = node.ann[QuantParams]
    return np.atleast_1d(numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64))


def fold_stream(stream: Stream, gain: float) -> dict[str, float]:
    """The stream carries ``gain``: its readers' input steps times ``gain``, its Clips' bounds
    too; returns the readers' input gains."""
    _fold_activation(stream.readers, 1.0 / gain)
    _scale_clips(stream.clips, gain)
    return dict.fromkeys((r.name for r in stream.readers), gain)


def _fold_activation(readers: list[Node], r: float) -> float:
    """Divide the readers' input steps by ``r``; the layer's gain is ``1/r``."""
    for reader in readers:
        rq = reader.ann[QuantParams]
        reader.ann.put(replace(rq, a_step=float(np.float32(rq.a_step / r))))
    return 1.0 / r


def _fold_lut(graph: Graph, node: Node, r: float) -> float:
    """Put ``Mul(·, fl32(r))`` (``ActivationScale``) between ``node`` and every reader of its
    output; the layer's gain is ``1/r``."""
    out = node.outputs[0]
    info = graph.tensors[out]
    scaled = graph.unique_name(f"{out}_lut_in")
    graph.tensors[scaled] = TensorInfo(scaled, info.shape, info.dtype)
    factor = graph.unique_name(f"{node.name}_lut_scale")
    graph.set_initializer(factor, np.array(r, dtype=np.float32))
    graph.replace_all_uses(out, scaled)
    mul = graph.add_node(Node(graph.unique_name(f"{node.name}_lut_mul"), "Mul", (out, factor), (scaled,)))
    mul.ann.put(ActivationScale(float(np.float32(r))))
    return 1.0 / r


def _scale_clips(clips: list[Node], gain: float) -> None:
    """Multiply each Clip's bounds by ``gain`` (in float64, rounded once to float32, what every
    engine applies; ``±inf`` stays), recording the float model's bounds in ``ScaledBounds``."""
    for clip in clips:
        lo, hi = float(clip.attrs["min"]), float(clip.attrs["max"])
        clip.attrs["min"] = float(np.float32(gain * lo))
        clip.attrs["max"] = float(np.float32(gain * hi))
        clip.ann.put(ScaledBounds(gain, lo, hi))


def adc_fold(graph: Graph, node: Node, exact: np.ndarray, x: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(k, S_ADC')`` with ``S_W·S_ADC'·S_A = 2^−k``: the power of two above ``s`` (the ADC
    range grows) or, when the partial sums of calibration input ``x`` say it quantizes them
    with less error, the one below (per column when the scale is)."""
    q = node.ann[QuantParams]
    k_up = ceil_exponent(exact)
    step_up = q.adc_step.astype(np.float64) * (numerics.shift_scale(k_up) / exact)
    k, step = k_up, step_up
    if x is not None:
        p = layer_partial_sums(graph, node, x)
        up = conversion_error(p, step_up, q)
        down = conversion_error(p, step_up / 2, q)
        k, step = np.where(down < up, k_up + 1, k_up), np.where(down < up, step_up / 2, step_up)
    adc = step.astype(np.float32)
    adc.flags.writeable = False
    return k.astype(np.int64), adc


def layer_partial_sums(graph: Graph, node: Node, x: np.ndarray) -> np.ndarray:
    """The partial sums ``(M, segments·T·S, Cout)`` of every conversion of the quantized layer on
    calibration input ``x`` (``calibration.partial_sums``), its weights split into digits as the
    build holds them (``QuantParams.w_digits``: two's complement or offset digits, whose
    partial sums differ in range and sign)."""
    q = node.ann[QuantParams]
    return partial_sums(cim_spec(graph, node), x, q.w_step, q.w_bits, q.a_step, q.a_bits, q.a_signed,
                        cell_bits=q.cell_bits, dac_bits=q.dac_bits, w_digits=q.w_digits)


def conversion_error(p: np.ndarray, adc_step: np.ndarray, q: QuantParams) -> np.ndarray:
    """Squared ADC error of partial sums ``p (M, segments·T·S, Cout)`` with every conversion
    kind at its step ``adc_step · 2^−m_{t,j}``, as it reaches the layer's sum: each kind's error
    weighted by the square of its shift-add weight ``c_k = 2^(j·cell_bits + t·dac_bits)`` (the
    error quantize's ``kind_steps`` minimises); per column when ``adc_step`` is, else in total."""
    return conversion_errors(p, np.reshape(adc_step, (1, -1)), q)[0]


def conversion_errors(p: np.ndarray, steps: np.ndarray, q: QuantParams) -> np.ndarray:
    """``conversion_error`` of every candidate row of ``steps`` ``(G, C)``, stacked; an
    unsliced layer's partial sums are sliced and subsampled once for all (``squared_errors``)."""
    if q.w_slices * q.a_slices == 1:
        return squared_errors(p, steps, q.adc_bits, True, 2 if steps.shape[1] > 1 else None)
    return np.stack([_sliced_error(p, step, q) for step in steps])


def _sliced_error(p: np.ndarray, adc_step: np.ndarray, q: QuantParams) -> np.ndarray:
    """``conversion_error`` of a sliced layer (``w_slices · a_slices > 1`` conversion kinds)."""
    kinds = q.w_slices * q.a_slices
    steps = slicing.conversion_steps(adc_step.astype(np.float32), q.adc_shift, kinds)  # (kinds, C)
    segments = p.shape[1] // kinds
    steps = np.tile(steps, (segments, 1))[None]
    weights = slicing.conversion_weights(segments, q.a_bits, q.dac_bits, q.w_bits, q.cell_bits).astype(np.float64)
    err = (p - numerics.quantize(p, steps, q.adc_bits, True) * steps).astype(np.float64) ** 2
    err *= (weights**2).reshape(1, -1, 1)
    return err.sum(axis=(0, 1)) if adc_step.size > 1 else np.atleast_1d(err.sum())


def ceil_exponent(scale: np.ndarray) -> np.ndarray:
    """The ``k`` of the smallest power of two ``2^−k ≥ scale`` (int64)."""
    mant, exp = np.frexp(np.asarray(scale, dtype=np.float64))  # scale = mant·2^exp, 0.5 ≤ mant < 1
    return np.where(mant == 0.5, 1 - exp, -exp).astype(np.int64)


@dataclass(frozen=True)
class FoldTargets:
    """Where a layer's remainder folds: the reader CIM layers (their ``S_A`` divided by ``r``)
    and the Clips on the way (their bounds multiplied by ``1/r``)."""

    readers: list[Node]
    clips: list[Node]


def fold_targets(graph: Graph, node: Node) -> FoldTargets | None:
    """The CIM layers reading ``node``'s output through homogeneous ops and constant-bound
    Clips only, and those Clips; ``None`` when the output also reaches a graph output or any
    other op, or reaches no CIM layer."""
    frontier, readers, clips = [node.outputs[0]], [], []
    while frontier:
        tensor = frontier.pop()
        if tensor in graph.outputs:
            return None
        for reader in graph.consumers(tensor):
            if CimLayer in reader.ann and QuantParams in reader.ann and list(reader.inputs[:1]) == [tensor] \
                    and tensor not in reader.inputs[1:]:
                readers.append(reader)
            elif scalable_clip(reader, tensor):
                clips.append(reader)
                frontier.append(reader.outputs[0])
            elif homogeneous(reader) or constant_product(graph, reader, tensor):
                frontier.append(reader.outputs[0])
            else:
                return None
    return FoldTargets(readers, clips) if readers else None


def fold_readers(graph: Graph, node: Node) -> list[Node] | None:
    """The reader CIM layers of ``fold_targets`` (``None`` when the remainder cannot fold there)."""
    targets = fold_targets(graph, node)
    return None if targets is None else targets.readers


def lut_readers(graph: Graph, node: Node) -> list[Node] | None:
    """The readers of ``node``'s output when they and the nodes after them compute one
    elementwise function of it alone — an activation, a lookup table in hardware (module doc):
    every reader is elementwise (``OpDef.elementwise``) with every input that output, a tensor
    computed from it so, or a scalar constant, and one of them (or after them) is a one-input op
    that is not homogeneous and not a ``Clip`` (``_nonlinear_unary``). ``None`` when the output is
    a graph output or read by anything else."""
    out = node.outputs[0]
    readers = graph.consumers(out)
    if out in graph.outputs or not readers:
        return None
    derived, inside = {out}, list[Node]()
    grew = True
    while grew:  # in topological order a node may be met before its other input is derived
        grew = False
        for tensor in list(derived):
            for reader in graph.consumers(tensor):
                if reader.outputs[0] not in derived and _elementwise_of(graph, reader, derived):
                    inside.append(reader)
                    derived.add(reader.outputs[0])
                    grew = True
    names = {n.name for n in inside}
    if any(r.name not in names for r in readers) or not any(_nonlinear_unary(n) for n in inside):
        return None
    return readers


def _elementwise_of(graph: Graph, node: Node, derived: set[str]) -> bool:
    """``node`` is elementwise, with one output, and reads only ``derived`` tensors and scalar
    constants (at least one ``derived``)."""
    op = find(node.op)
    inputs = [t for t in node.inputs if t]
    if op is None or not op.elementwise or len(node.outputs) != 1 or not any(t in derived for t in inputs):
        return False
    return all(t in derived or (t in graph.initializers and graph.initializers[t].size == 1) for t in inputs)


def _nonlinear_unary(node: Node) -> bool:
    """A one-input op that is not homogeneous and needs a table (``Sigmoid``, ``Tanh``…): not a
    ``Clip``, which takes a scale into its bounds (a comparator, no table to hold ``r``)."""
    op = find(node.op)
    return op is not None and op.inputs == (1, 1) and not op.homogeneous(node) and node.op != "Clip"
