"""quantize: attach ``QuantParams`` (steps and bits; docs/build-format.md, 'The numerical contract') to every CIM layer.

Bits per layer: ``w_bits``/``a_bits`` default to the macro's ``cell_bits``/``dac_bits`` and
``adc_bits`` to its ADC's, overridden for all layers by ``default_bits`` and per layer by
``bits``. Weights wider than a cell and inputs wider than the DAC are bit-sliced
(``cimc.quant.slicing``: every ``QuantParams`` records the macro's ``cell_bits``/``dac_bits``); a
layer's ADC bits may be fewer than the macro's, never more. Step sizes, per layer (the paper) or per output column
(``granularity="column"``, ColumnQuant):

* from QAT when the model carries ``metadata["cimc.quant"]`` (``cimc.quant.qat_metadata``), for the
  layers whose asked bits are their trained bits (the others are re-quantized, with a warning);
* from a quantized (QDQ or QONNX) model's own quantizers (``graph.metadata["cimc.qdq"]``,
  ``cimc.quant.imported``): its ``S_W`` and ``S_A`` where they fit (the same bits as asked, weights
  still on the model's grid, sums exact on this macro), the ADC step calibrated on them; source
  ``qdq``, ``qdq-weights`` or ``qdq-inputs``, the rest calibrated with a warning;
* otherwise calibrated: ``S_W`` from the weights themselves (MSE-optimal; ``aware``: MSE
  weighted by the mean square of the input each weight multiplies; or LSQ's initialisation
  ``2·mean|W|/√Q_P``); ``S_A`` MSE-optimal on the layer's float input over the calibration
  batch, signed narrow (``a_signed``) when the input went negative there and signed codes
  quantize it with less squared error than unsigned ones (``input_signed``);
  ``S_ADC`` MSE-optimal (at least 1) on the exact per-segment partial sums
  ``p_s = Σ_{r∈s} w_q[r]·a_q[r]`` of the batch; with ``adc_method="output"`` (``--adc-step
  output``) then scaled by the factor near 1 of least error of the layer's output after its
  activation (``cimc.quant.adc_output``; after AdaRound, before bias correction).

A pooled layer (``WeightPool``, set by pool-weights; docs/weight-pool.md) takes ``S_W = α``, the
pool's scale, and ``w_bits`` = the pool's ``code_bits`` (or the asked bits when at least that),
so its codes are the pool's ``q`` exactly; its input and ADC steps are calibrated; QAT or QDQ
steps of a pooled layer are not used (a warning says so) — except for a pool trained with the
model (``cimc qat --weight-pool``; ``WeightPool.trained``), whose QAT steps are the ones the
pool was trained for (``S_W = α``). A model carrying a trained pool (``cimc.pool``) must be
compiled with ``--weight-pool`` (a ``UsageError`` otherwise).

With ``adaround``, each calibrated layer's weights are then rounded up or down by AdaRound
(``cimc.quant.adaround``: least output error on its calibration input through the DAC) instead
of to the nearest code; the layer reads them as new float weights ``S_W·q`` (whose nearest
codes are ``q``), and its ADC step is calibrated on the new codes. Pooled layers and layers with
a quantized model's steps keep theirs.
With ``bias_correction``, each calibrated layer's bias then absorbs its mean output error on
the calibration batch (``cimc.quant.bias_correction``). With ``fold_columns`` (``--equalize``
with the shift on), a layer with per-column steps then makes each column's output scale a
power of two by equalising the remainder with the Conv that reads it, before that Conv is
calibrated (``cimc.passes.equalize.fold_column_remainder``; the float function is unchanged).

Needs tile-wordlines first (partial sums are per segment). Layers that already carry
``QuantParams`` are kept, so a second run changes nothing. ``ensures`` checks that every
partial sum stays below 2^24, where float32 arithmetic on codes is exact.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cimc.data.preprocess import DEFAULT as DEFAULT_PREPROCESS
from cimc.data.preprocess import Preprocess
from cimc.errors import InvalidModelError, MappingError, UnsupportedError, UsageError
from cimc.ir.annotations import CimLayer, QuantParams, WeightPool, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.macro import MacroSpec
from cimc.mapping.select import cim_nodes
from cimc.options import validate
from cimc.passes.context import QuantizeReport
from cimc.passes.equalize import fold_column_remainder
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.registry import register
from cimc.quant import adaround, numerics, slicing
from cimc.quant.adc_output import output_adc_step, output_bounds
from cimc.quant.bias_correction import corrected_bias
from cimc.quant.blas import single_blas_thread
from cimc.quant.calibration import (
    DEFAULT_SIZE,
    Calibration,
    collect_inputs,
    load_feeds,
    partial_sums,
    stream_inputs,
)
from cimc.quant.cim_layer import CimSpec, cim_spec
from cimc.quant.imported import KEY as QDQ_KEY
from cimc.quant.imported import ImportedSteps, imported_steps, parse_imported
from cimc.quant.kind_steps import fit_kind_steps
from cimc.quant.layer_steps import Chosen, calibrated, input_signed
from cimc.quant.pool_metadata import KEY as POOL_KEY
from cimc.quant.qat_metadata import KEY, check_layer_names, parse_qat
from cimc.quant.step_search import mse_step

log = logging.getLogger(__name__)

EXACT_LIMIT = 1 << 24


@dataclass(frozen=True)
class LayerBits:
    """Per-layer bit overrides; ``None`` keeps the macro's value."""

    w_bits: int | None = None
    a_bits: int | None = None
    adc_bits: int | None = None

    def resolve(self, macro: MacroSpec, default: LayerBits | None = None) -> tuple[int, int, int]:
        """``(w_bits, a_bits, adc_bits)``; weights default to the macro's cell bits but at least
        2 (signed codes need 2 bits: on 1-bit cells they are sliced over two cells)."""
        d = default or LayerBits()
        return (self.w_bits or d.w_bits or max(macro.cell_bits, 2), self.a_bits or d.a_bits or macro.dac_bits,
                self.adc_bits or d.adc_bits or macro.adc_bits)


@register
@dataclass(frozen=True)
class Quantize(GraphPass):
    name = "quantize"
    needs = ("tile-wordlines",)
    granularity: str = "layer"
    weight_method: str = "mse"
    calib: str = "synthetic"
    calib_size: int = DEFAULT_SIZE
    data_root: str | None = None
    preprocess: Preprocess = DEFAULT_PREPROCESS
    bits: Mapping[str, LayerBits] = field(default_factory=dict)
    default_bits: LayerBits = LayerBits()
    bias_correction: bool = False
    fold_columns: bool = False
    adaround: bool = False
    weight_digits: str = "twos"
    adc_method: str = "mse"

    @classmethod
    def from_options(cls, options: Any) -> Quantize:
        bits = {k: LayerBits(**v) for k, v in (options.layer_bits or {}).items()}
        equalize, shift = options.equalize, not options.no_shift
        return cls(granularity=options.granularity, weight_method=options.weight_method, calib=options.calib,
                   calib_size=options.calib_size, data_root=options.data_root, bits=bits,
                   bias_correction=options.bias_correction, fold_columns=equalize and shift,
                   adaround=options.adaround, weight_digits=options.weight_digits, adc_method=options.adc_method,
                   preprocess=Preprocess.from_options(options.image_size, options.mean, options.std),
                   default_bits=LayerBits(options.w_bits, options.a_bits, options.adc_bits))

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        validate("granularity", self.granularity)
        validate("weight_method", self.weight_method)
        validate("weight_digits", self.weight_digits)
        validate("adc_method", self.adc_method)
        nodes = cim_nodes(graph)
        untiled = [n.name for n in nodes if WordlineTiling not in n.ann]
        if untiled:
            raise MappingError(f"quantize needs tile-wordlines first (untiled: {', '.join(untiled[:5])})")
        if POOL_KEY in graph.metadata and not any(WeightPool in n.ann for n in nodes):
            raise UsageError("the model was trained with a weight pool ('cimc qat --weight-pool'): compiling it "
                             "without one would not compute the trained codes",
                             hint="compile with the --weight-pool, --pool-vector and --pool-error-bits it was "
                                  "trained with")
        unknown = sorted(set(self.bits) - {n.name for n in nodes})
        if unknown:
            raise UsageError(f"bit overrides name layer(s) that are not CIM layers: {', '.join(unknown)}",
                             hint=f"CIM layers: {', '.join(n.name for n in nodes[:8])}")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        todo = [n for n in cim_nodes(out) if QuantParams not in n.ann]
        if not todo:
            return PassResult(out, False)
        qat = self._keep_asked_bits(self._qat(out))
        pooled = sorted(n.name for n in todo if WeightPool in n.ann and n.name in qat and not n.ann[WeightPool].trained)
        if pooled:
            log.warning("QAT steps of %d pooled layer(s) (%s) are not used: a pooled layer takes the pool's "
                        "scale", len(pooled), ", ".join(pooled[:5]))
            qat = {k: v for k, v in qat.items() if k not in pooled}
        for node in todo:
            if node.name in qat:
                node.ann.put(with_macro_widths(node.name, qat[node.name], ctx.macro))
        rest = [n for n in todo if n.name not in qat]
        if qat and rest:
            log.warning("QAT parameters missing for %d CIM layer(s) (%s): calibrating them",
                        len(rest), ", ".join(n.name for n in rest[:5]))
        if rest:
            self._calibrate(out, rest, ctx, graph)
        ctx.quantize = QuantizeReport(sorted(qat), [n.name for n in rest], self.granularity, self.weight_method)
        return PassResult(out, True)

    def ensures(self, graph: Graph, ctx: PassContext) -> None:
        for node in cim_nodes(graph):
            if QuantParams not in node.ann:
                raise AssertionError(f"CIM layer '{node.name}' left unquantized")
            check_bits(node, ctx.macro)

    def _keep_asked_bits(self, qat: dict[str, QuantParams]) -> dict[str, QuantParams]:
        """The QAT layers whose trained bits are the bits asked for (``--bits``, ``--w-bits`` …);
        the others are re-quantized by calibration at the asked bits, with a warning: an asked
        width is never silently ignored, and the trained steps of another width are never reused."""
        changed = sorted(name for name, q in qat.items() if self._asks_other_bits(name, q))
        if changed:
            log.warning("the bits asked for %d QAT layer(s) (%s) differ from the bits they were trained at: "
                        "re-quantizing them by calibration (their trained steps are not used; run cimc qat with "
                        "these bits to train them)", len(changed), ", ".join(changed[:5]))
        return {name: q for name, q in qat.items() if name not in changed}

    def _asks_other_bits(self, name: str, q: QuantParams) -> bool:
        """Whether ``--bits``/``--w-bits``/``--a-bits``/``--adc-bits`` ask layer ``name`` for
        other bits than ``q``'s (a width not asked for keeps the trained one)."""
        asked, default = self.bits.get(name, LayerBits()), self.default_bits
        want = (asked.w_bits or default.w_bits, asked.a_bits or default.a_bits, asked.adc_bits or default.adc_bits)
        return any(w is not None and w != have for w, have in zip(want, (q.w_bits, q.a_bits, q.adc_bits), strict=True))

    def _qat(self, graph: Graph) -> dict[str, QuantParams]:
        text = graph.metadata.get(KEY)
        if text is None:
            return {}
        couts = {n.name: n.ann[CimLayer].cout for n in cim_nodes(graph)}
        check_layer_names(text, {n.name: n.op for n in graph.nodes}, couts)
        return parse_qat(text, couts)

    def _calibrate(self, graph: Graph, nodes: list[Node], ctx: PassContext, float_graph: Graph) -> None:
        """Steps of ``nodes`` (of ``graph``, which this changes) from the float activations of
        ``float_graph`` (the pass's input, left as it is) on the calibration batch."""
        cal = calibration_batch(ctx, graph, self.calib, self.calib_size, self.data_root, self.preprocess)
        imported = self._imported(graph)
        with single_blas_thread():  # many small products: threads cost more than they give
            if not self.fold_columns:
                self._calibrate_streaming(graph, float_graph, nodes, imported, cal, ctx)
                return
            inputs = collect_inputs(graph, cal.feeds, [n.name for n in nodes])
            ctx.calibration_inputs = inputs
            pending = {n.name for n in nodes} - set(imported)
            for node in nodes:
                pending.discard(node.name)
                self._calibrate_one(graph, node, inputs[node.name], imported, ctx.macro)
                if node.name not in imported:
                    fold_column_remainder(graph, node, inputs, pending)

    def _calibrate_one(self, graph: Graph, node: Node, x: np.ndarray, imported: dict[str, ImportedSteps],
                       macro: MacroSpec) -> None:
        """One layer's steps from its float input ``x``, then AdaRound, the ADC step of least
        output error and bias correction if asked."""
        float_spec = cim_spec(graph, node)
        node.ann.put(self._layer(graph, node, x, imported.get(node.name), macro))
        if self.adaround and node.name not in imported and WeightPool not in node.ann:
            self._adaround(graph, node, x, macro)
        if self.adc_method == "output":
            node.ann.put(output_adc_step(cim_spec(graph, node), float_spec, x, output_bounds(graph, node),
                                         self.bias_correction))
        if self.bias_correction:
            correct_bias(graph, node, x, float_spec)

    def _calibrate_streaming(self, graph: Graph, float_graph: Graph, nodes: list[Node],
                             imported: dict[str, ImportedSteps], cal: Calibration, ctx: PassContext) -> None:
        """Each layer calibrated as soon as the interpreter has computed its float input, which
        is then dropped (``calibration.stream_inputs``): memory holds the live activations and
        one layer's input, not every layer's. Layers are independent here (no column fold), so
        the order does not change the steps. The inputs of the ``terminal_layers`` (few, and
        small: a classifier's) are kept in ``ctx.calibration_inputs``: scale-to-shift folds their
        remainder into the ADC step, which reads them. It recomputes any other input it needs
        from ``ctx.calibration_graph`` (``float_graph``)."""
        ctx.calibration_inputs = {}
        ctx.calibration_graph = float_graph
        by_name = {n.name: n for n in nodes}
        keep = terminal_layers(graph, nodes)
        for name, x in stream_inputs(float_graph, cal.feeds, list(by_name)):
            self._calibrate_one(graph, by_name.pop(name), x, imported, ctx.macro)
            if name in keep:
                ctx.calibration_inputs[name] = x
        if by_name:
            raise AssertionError(f"calibration computed no input for {', '.join(sorted(by_name))}")

    def _layer(self, graph: Graph, node: Node, x: np.ndarray, steps: ImportedSteps | None,
               macro: MacroSpec) -> QuantParams:
        """One layer calibrated, or with a quantized model's steps (``cimc.quant.imported``) when
        they fit this macro; where they do not, re-quantized with a warning."""
        asked = self.bits.get(node.name, LayerBits())
        bits = asked.resolve(macro, self.default_bits)
        spec = cim_spec(graph, node)
        pool = node.ann.get_ann(WeightPool)
        if pool is not None:
            if steps is not None:
                log.warning("layer '%s': the quantized model's steps are not used: a pooled layer takes the "
                            "pool's scale", node.name)
            w_bits = pooled_bits(node.name, pool, asked.w_bits or self.default_bits.w_bits)
            chosen = pooled_steps(pool, x, w_bits, bits[1])
            return calibrate_layer(spec, x, (w_bits, *bits[1:]), self.granularity, self.weight_method, macro, chosen)
        if steps is None:
            return calibrate_layer(spec, x, bits, self.granularity, self.weight_method, macro,
                                   w_digits=self.weight_digits)
        explicit = (asked.w_bits or self.default_bits.w_bits, asked.a_bits or self.default_bits.a_bits)
        chosen = imported_steps(node.name, spec, x, steps, bits[:2], explicit, self.granularity, self.weight_method)
        params = calibrate_layer(spec, x, bits, self.granularity, self.weight_method, macro, chosen)
        trial = Node(node.name, node.op, node.inputs, node.outputs, dict(node.attrs))
        trial.ann.update(node.ann)
        trial.ann.put(params)
        try:
            check_bits(trial, macro)
        except (UnsupportedError, MappingError) as exc:
            log.warning("layer '%s': the model's %d-bit weights and %d-bit inputs do not fit macro '%s' (%s): "
                        "re-quantizing at %d/%d bits", node.name, chosen.w_bits, chosen.a_bits, macro.name,
                        exc.message, bits[0], bits[1])
            return calibrate_layer(spec, x, bits, self.granularity, self.weight_method, macro,
                                   w_digits=self.weight_digits)
        return params

    def _adaround(self, graph: Graph, node: Node, x: np.ndarray, macro: MacroSpec) -> None:
        """AdaRound's codes (``cimc.quant.adaround``) for the calibrated ``node``: its weights become
        ``S_W·q`` and its ADC step is re-calibrated on them (module doc). A Gemm with
        ``alpha ≠ 1`` keeps round-to-nearest (logged)."""
        if node.op == "Gemm" and float(node.attrs.get("alpha", 1.0)) != 1.0:
            log.info("adaround skips '%s' (Gemm with alpha != 1)", node.name)
            return
        if adaround.too_large(cim_spec(graph, node)):
            log.warning("adaround keeps round-to-nearest for '%s': %d rows > %d (its cost grows as rows²)",
                        node.name, cim_spec(graph, node).rows, adaround.MAX_ROWS)
            return
        q = node.ann[QuantParams]
        codes = adaround.adaround_codes(cim_spec(graph, node), x, q.w_step, q.w_bits, q.a_step, q.a_bits, q.a_signed,
                                        code_max=slicing.code_max(q.w_bits, q.cell_bits, q.w_digits))
        step = np.asarray(q.w_step, dtype=np.float32).reshape((-1,) + (1,) * (codes.ndim - 1))
        set_weight(graph, node, (codes * step).astype(np.float32))
        chosen = Chosen(q.w_bits, q.w_step, q.a_bits, q.a_step, q.a_signed, q.source)
        node.ann.put(calibrate_layer(cim_spec(graph, node), x, (q.w_bits, q.a_bits, q.adc_bits), self.granularity,
                                     self.weight_method, macro, chosen, w_digits=q.w_digits))

    def _imported(self, graph: Graph) -> dict[str, ImportedSteps]:
        text = graph.metadata.get(QDQ_KEY)
        return {} if text is None else parse_imported(text)


def terminal_layers(graph: Graph, nodes: list[Node]) -> set[str]:
    """The layers of ``nodes`` whose output reaches no CIM layer of ``graph`` (through any ops):
    a classifier, the last layer of each branch that ends the model."""
    feeds_cim: dict[str, bool] = {}
    for node in reversed(graph.topo_order()):
        feeds_cim[node.name] = any(CimLayer in r.ann or feeds_cim[r.name] for t in node.outputs
                                   for r in graph.consumers(t))
    return {n.name for n in nodes if not feeds_cim[n.name]}


def pooled_bits(name: str, pool: WeightPool, asked: int | None) -> int:
    """A pooled layer's weight bits: the asked bits, at least the pool's ``code_bits``
    (fewer is a ``UsageError``), or ``code_bits``."""
    if asked is None:
        return pool.code_bits
    if asked < pool.code_bits:
        raise UsageError(f"layer '{name}': its pooled weight codes need {pool.code_bits} bits, {asked} were asked",
                         hint=f"ask at least {pool.code_bits} weight bits, or use fewer --pool-error-bits")
    return asked


def pooled_steps(pool: WeightPool, x: np.ndarray, w_bits: int, a_bits: int) -> Chosen:
    """A pooled layer's steps before its ADC step: ``S_W = α`` (the pool's scale), ``S_A``
    MSE-optimal on its calibration input, signed as ``input_signed`` says."""
    signed = input_signed(x, a_bits)
    return Chosen(w_bits, pool.scale, a_bits, float(mse_step(x, a_bits, signed)[0]), signed, "calibration")


def with_macro_widths(name: str, q: QuantParams, macro: MacroSpec) -> QuantParams:
    """QAT parameters on this macro's cells and DACs; their ``adc_shift`` (if any) must have
    one exponent per kind of conversion ``T·S`` of this macro."""
    q = replace(q, cell_bits=macro.cell_bits, dac_bits=macro.dac_bits)
    kinds = q.w_slices * q.a_slices
    if q.adc_shift is not None and q.adc_shift.shape[0] != kinds:
        raise InvalidModelError(f"'{KEY}' layer '{name}': adc_shift has {q.adc_shift.shape[0]} exponent(s), but "
                                f"{q.w_bits}-bit weights on {macro.cell_bits}-bit cells and {q.a_bits}-bit inputs on "
                                f"{macro.dac_bits}-bit DACs make {kinds} kind(s) of conversion",
                                hint="compile with the macro the model was trained for (--macro)")
    if kinds == 1 and q.adc_shift is not None:  # one kind of conversion: its exponent is the step's
        step = slicing.conversion_steps(q.adc_step, q.adc_shift, 1).reshape(-1)
        step.flags.writeable = False
        q = replace(q, adc_step=step, adc_shift=None)
    return q


def calibration_batch(ctx: PassContext, graph: Graph, source: str, size: int, root: str | None,
                      preprocess: Preprocess = DEFAULT_PREPROCESS) -> Calibration:
    """The calibration batch, loaded once per compile and shared through ``ctx.calibration``."""
    cached = ctx.calibration
    label = source if isinstance(source, str) else "python"  # an array given from Python (``CompileOptions``)
    if cached is not None and cached.source == label and cached.size >= size:
        return cached
    cal = load_feeds(graph, source, size, root=root, preprocess=preprocess, memory_budget=ctx.memory_budget)
    ctx.calibration = cal
    return cal




def correct_bias(graph: Graph, node: Node, x: np.ndarray, float_spec: CimSpec | None = None) -> None:
    """Bias correction (``cimc.quant.bias_correction``) of a quantized Conv, or Gemm with
    ``beta = 1``, against ``float_spec`` (the layer before quantize changed its weights, e.g. by
    AdaRound; default: as it is): the corrected bias becomes a new initializer the layer reads.
    MatMul (no bias input) and other Gemms are left as they are."""
    if has_own_bias(node):
        set_bias(graph, node, corrected_bias(cim_spec(graph, node), x, float_spec))


def set_weight(graph: Graph, node: Node, w: np.ndarray) -> None:
    """``w`` (the layer's weights ``(Cout, Cin_g, kh, kw)`` as ``cim_layer.layer_weight`` reads
    them, float32) as a new initializer that ``node`` reads: a Conv's as is, a Gemm's (``alpha =
    1``) or MatMul's ``B`` transposed back as the node reads it."""
    if node.op == "Conv":
        b = w
    else:
        mat = w.reshape(w.shape[0], w.shape[1])  # (Cout, K)
        b = mat if node.op == "Gemm" and node.attrs["transB"] else mat.T
    _feed(graph, node, 1, "weight_rounded", np.ascontiguousarray(b, dtype=np.float32))


def has_own_bias(node: Node) -> bool:
    """Whether bias correction can change ``node``'s bias: a Conv, or a Gemm with ``beta = 1``
    (logged otherwise)."""
    if node.op == "MatMul" or (node.op == "Gemm" and float(node.attrs.get("beta", 1.0)) != 1.0):
        log.info("bias correction skips '%s' (%s without a bias of its own)", node.name, node.op)
        return False
    return True


def set_bias(graph: Graph, node: Node, bias: np.ndarray) -> None:
    """``bias`` (float32) as a new initializer that ``node`` reads as its bias."""
    _feed(graph, node, 2, "bias_corrected", bias)


def _feed(graph: Graph, node: Node, slot: int, suffix: str, value: np.ndarray) -> None:
    """``value`` as a new initializer ``<node>.<suffix>`` that ``node`` reads as input ``slot``
    (the old one stays in the graph for other readers)."""
    name = graph.unique_name(f"{node.name}.{suffix}")
    graph.set_initializer(name, value)
    inputs = list(node.inputs) + [""] * (slot + 1 - len(node.inputs))
    inputs[slot] = name
    graph.set_inputs(node, inputs)


def calibrate_layer(spec: CimSpec, x: np.ndarray, bits: tuple[int, int, int], granularity: str,
                    weight_method: str, macro: MacroSpec, chosen: Chosen | None = None,
                    w_digits: str = "twos") -> QuantParams:
    """Steps of one layer from its weights and calibration input ``x`` (module doc), or the
    ``chosen`` weight and input steps (a quantized model's); the ADC step from the partial sums
    of every slice's conversion. ``w_digits``: the weight digit scheme of a sliced layer
    (``"twos"`` or ``"offset"``, the ``--weight-digits`` option; ``"offset"`` narrows the codes
    to ``±slicing.code_max``, which the calibrated weight step is searched for; ``chosen`` steps
    must give codes in that range)."""
    w_bits, a_bits, adc_bits = bits
    widths = {"cell_bits": macro.cell_bits, "dac_bits": macro.dac_bits}
    top = slicing.code_max(chosen.w_bits if chosen else w_bits, macro.cell_bits, w_digits)
    c = chosen or calibrated(spec, x, w_bits, a_bits, granularity, weight_method, top)
    if numerics.always_zero(c.a_bits, c.a_signed):
        raise UsageError(f"layer '{spec.name}': its inputs go negative, so they need signed codes, and "
                         f"{numerics.ONE_BIT_SIGNED}",
                         hint="use 2 or more input bits for this layer (--a-bits or --bits)")
    p = partial_sums(spec, x, c.w_step, c.w_bits, c.a_step, c.a_bits, c.a_signed, **widths, w_digits=w_digits)
    kind_weights = slicing.conversion_weights(1, c.a_bits, macro.dac_bits, c.w_bits, macro.cell_bits)
    adc_step, adc_shift = adc_steps(p, adc_bits, kind_weights.shape[0], granularity == "column", kind_weights)
    for arr in (c.w_step, adc_step, adc_shift):
        if arr is not None:
            arr.flags.writeable = False
    return QuantParams(c.w_bits, c.a_bits, adc_bits, c.w_step, c.a_step, adc_step, c.a_signed, source=c.source,
                       **widths, adc_shift=adc_shift, w_digits=w_digits)


def adc_steps(p: np.ndarray, adc_bits: int, kinds: int, per_column: bool,
              kind_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(S_ADC, m)`` from the partial sums ``p (M, segments·kinds, Cout)``: one MSE-optimal
    step (at least 1) per kind of conversion ``(t, j)``, then ``S_ADC`` and the power-of-two
    fractions ``2^−m`` of it. With ``kind_weights`` (the kinds' shift-add weights; what the
    quantize pass gives) those of least recombined error (``kind_steps.fit_kind_steps``);
    without, the coarsest kind's step as ``S_ADC`` (``slicing.fit_shifts``, what the QAT
    hook's calibration does). ``m`` is ``None`` for an unsliced layer."""
    axis = 2 if per_column else None
    if kinds == 1:
        return mse_step(p, adc_bits, True, axis=axis, min_step=1.0), None
    by_kind = p.reshape(p.shape[0], -1, kinds, p.shape[2])
    steps = np.stack([mse_step(by_kind[:, :, k], adc_bits, True, axis=axis, min_step=1.0) for k in range(kinds)])
    if kind_weights is None:
        return slicing.fit_shifts(steps)
    return fit_kind_steps(by_kind, steps, kind_weights, adc_bits, per_column)


def check_bits(node: Node, macro: MacroSpec) -> None:
    """ADC bits within the macro's and every sum exact in float32: each conversion's partial
    sum ``|p| ≤ p_max = rows·max|d|·max|e|``, its ADC code ``|p̂| ≤ min(2^(adc_bits−1) − 1,
    round(p_max / min S_ADC))`` and the recombined ``|P| ≤ Σ_k 2^(j·c+t·dac)·max|p̂|`` stay
    below 2^24 (``cimc.quant.slicing``)."""
    q = node.ann[QuantParams]
    if q.adc_bits > macro.adc_bits:
        raise MappingError(f"layer '{node.name}' needs {q.adc_bits}-bit ADC codes but macro "
                           f"'{macro.name}' has {macro.adc_bits}-bit ADCs",
                           hint=f"use a macro with more ADC bits or --adc-bits {macro.adc_bits}")
    tiling = node.ann[WordlineTiling]
    p_max = tiling.activated_wordlines() * slicing.digit_max(q.w_bits, q.cell_bits, True, q.w_digits) * \
        slicing.digit_max(q.a_bits, q.dac_bits, q.a_signed)
    kinds = q.w_slices * q.a_slices
    steps = slicing.conversion_steps(q.adc_step, q.adc_shift, kinds).min(axis=1)  # (kinds,)
    adc_max = np.minimum(numerics.signed_max(q.adc_bits), np.rint(p_max / steps.astype(np.float64)))
    weights = slicing.conversion_weights(1, q.a_bits, q.dac_bits, q.w_bits, q.cell_bits, q.adc_shift)
    unit = 2.0 ** (0 if q.adc_shift is None else int(np.max(q.adc_shift)))  # P·2^M is an integer
    bound = max(p_max, int(tiling.num_segments * float(np.sum(weights * adc_max)) * unit))
    if bound >= EXACT_LIMIT:
        raise UnsupportedError(f"layer '{node.name}': sums may reach {bound:,} ≥ 2^24 with {q.w_bits}-bit "
                               f"weights, {q.a_bits}-bit inputs, {q.adc_bits}-bit ADC codes and "
                               f"{tiling.num_segments} segment(s) of up to {tiling.activated_wordlines()} "
                               "wordlines; float32 execution would not be exact",
                               hint="use fewer bits or fewer wordlines")
