"""Running a build the way the macros would, from the build files alone.

Per CIM layer, for a batch of ``N`` inputs (no Python loop over samples, pixels, segments
or ADC groups):

1. DAC codes ``a_q = clip(round(x / S_A))`` (``cimc.quant.numerics``);
2. every segment's bitline sums at once: one batched matrix product per segment part
   (onnxruntime's ``MatMul``, so the emulator needs no torch; ``MacroLayer.parts``: the full
   segments, and the shorter ones padded to their own longest) of the macro columns with the
   im2col rows each segment's wordlines see (``patches``), ``(S, Cout, Ho, Wo, N)``; the
   products and sums are integers below ``2^24`` (the quantize pass refuses a layer whose sums
   could reach it), exact in float32;
3. one ADC conversion per bitline and pixel: ``p̂ = clip(round(p / S_ADC), ±(2^(b−1) − 1))``;
4. the adder tree ``P = Σ_s p̂``, then the shifter (or scale) and the bias:
   ``y = P · scale + b'`` (3 and 4 on cache-sized blocks of output channels).

Activations stay channel-major: a CIM layer's output is a ``(N, Cout, Ho, Wo)`` view of its
``(Cout, Ho, Wo, N)`` array, which the digital ops of ``LAYOUT_FREE`` (elementwise, max) take
as it is and the next layer's ``patches`` reads without a transposition; every other digital
op, and the model outputs, get C-contiguous arrays.

A bit-sliced layer (``cimc.quant.slicing``) feeds its ``T`` DAC cycles as ``T`` batches of the same
convolution over its ``S`` digit columns per channel, converts every (cycle, segment, column)
with its kind's ADC step ``S_ADC·2^−m_{t,j}``, and shift-adds the codes in hardware order
(``cimc.emulator.slices``); its traced ADC codes are ``(N, Seg·T·S, Cout, Ho, Wo)``.

A run without ``record`` allocates no large array after its first (``layer_outputs``): the DAC
codes (written straight into the padded layout of a padded layer), the laid-out input, the
im2col rows and the adder tree's sums are scratch of the emulator's ``Workspace``, the output
is converted in place in the first segment's bitline sums, and Relu and Add overwrite an input
no later node reads (``in_place_target``). A recording run builds every array new.

Digital ops run with the reference's kernels and rounding rules
(``cimc.quant.reference.digital_op``; MaxPool as ``cimc.emulator.pool.max_pool``, the same
bits). ``Emulator.run`` returns the outputs and, with
``record``, per-layer traces (input codes, ADC codes ``(N, S, Cout, Ho, Wo)``, sums, outputs).
(Measured on VGG9, batch 64: onnxruntime's grouped convolution of the gathered channels ran
2.4–2.6× the float model's CPU time, this batched MatMul 2.2×; numpy's stacked matmul was 2–6×
slower than onnxruntime's MatMul on these shapes; session 8: 1.3× and 1.9× the float model's
CPU time on VGG9 batch 64 and ResNet-50 batch 8; session 9, without the page faults of fresh
arrays: 1.2× and 1.4×. ``benchmarks/results/emulator.md``.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.lib.stride_tricks import as_strided
from onnx import TensorProto, helper, numpy_helper

from cimc.backend.compute_files import decode_attr
from cimc.build.emulator_files import BuildFiles, read_build
from cimc.check.emulator import check_build
from cimc.documents.graph import NodeDoc, TensorDoc
from cimc.emulator.layers import MacroLayer, SegmentPart, macro_layers
from cimc.emulator.pool import max_pool
from cimc.emulator.slices import adc_steps, conversion_order, dac_cycles, shift_add
from cimc.emulator.workspace import Workspace
from cimc.errors import BuildError, UsageError
from cimc.frontend.onnx_export import EXPORT_IR_VERSION, EXPORT_OPSET
from cimc.ops.windows import window_out
from cimc.quant import numerics
from cimc.quant.batching import mixes_batch, split_batch
from cimc.quant.reference import CompiledRun, LayerTrace, concat_runs, digital_op


class Emulator:
    """A validated build, ready to run (module doc)."""

    def __init__(self, files: BuildFiles) -> None:
        check_build(files)
        self.files = files
        self.layers = macro_layers(files)
        self.nodes = [(n, {k: decode_attr(v) for k, v in n.attrs.items()}) for n in files.graph.nodes]
        self.constants = {t: files.constants[key] for t, key in files.graph.constants.items()}
        self._gemms = [gemm_session(layer) for layer in self.layers]
        self._work = Workspace()  # the scratch of runs without record, one run at a time (``_values``)
        self._work_lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path) -> Emulator:
        """Read, authenticate and check the build at ``path``."""
        return cls(read_build(path))

    @property
    def inputs(self) -> list[TensorDoc]:
        return list(self.files.graph.inputs)

    def feeds(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named, shape-checked float32 inputs (a bare array feeds the only input)."""
        if isinstance(x, np.ndarray):
            if len(self.inputs) != 1:
                raise UsageError(f"the model has {len(self.inputs)} inputs; pass them by name")
            (only,) = self.inputs
            x = {only.name: x}
        out = {}
        for spec in self.inputs:
            if spec.name not in x:
                raise UsageError(f"missing input '{spec.name}'")
            arr = np.ascontiguousarray(x[spec.name], dtype=np.float32)
            if arr.shape[1:] != tuple(spec.shape[1:]):
                raise UsageError(f"input '{spec.name}' has samples of shape {list(arr.shape[1:])}, "
                                 f"the model expects {spec.shape[1:]}")
            out[spec.name] = arr
        return out

    def run(self, x: np.ndarray | Mapping[str, np.ndarray], *, record: bool = False) -> CompiledRun:
        """Execute the model on a batch (module doc); a model that mixes its batch axis runs
        in chunks of its static batch size, of the inputs whose dim 0 is that size (an input
        of another leading size carries no batch: it is whole in every chunk)."""
        feeds = self.feeds(x)
        if not any(mixes_batch(node.op, attrs) for node, attrs in self.nodes):
            return self._run(feeds, record)
        batch = self.files.graph.batch
        batched = frozenset(t.name for t in self.inputs if t.shape[:1] == [batch])
        return concat_runs([self._run(chunk, record) for chunk in split_batch(feeds, batch, batched)])

    def tensors(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor the nodes compute, by name, for one batch of the compiled batch size
        (``cimc validate`` compares them with onnxruntime on ``model.cim.onnx``)."""
        values, _ = self._values(self.feeds(x), True)
        return {t: values[t] for node, _ in self.nodes for t in node.outputs if t in values}

    def _run(self, feeds: dict[str, np.ndarray], record: bool) -> CompiledRun:
        values, traces = self._values(feeds, record)
        outputs = {t.name for t in self.files.graph.outputs}
        ordered = sorted(outputs, key=self._output_order)
        return CompiledRun({name: np.ascontiguousarray(values[name]) for name in ordered}, traces)

    def _values(self, feeds: dict[str, np.ndarray], record: bool) -> tuple[dict[str, np.ndarray],
                                                                            dict[str, LayerTrace]]:
        """Every tensor of one batch (each freed after its last reader unless ``record``), on the
        emulator's workspace, or, while another thread's run holds that one, on a new workspace
        (runs from several threads stay correct; only the first reuses memory)."""
        if not self._work_lock.acquire(blocking=False):
            return self._compute(feeds, record, Workspace())
        try:
            return self._compute(feeds, record, self._work)
        finally:
            self._work_lock.release()

    def _compute(self, feeds: dict[str, np.ndarray], record: bool,
                 work: Workspace) -> tuple[dict[str, np.ndarray], dict[str, LayerTrace]]:
        values: dict[str, np.ndarray] = {**self.constants, **feeds}
        traces: dict[str, LayerTrace] = {}
        last = _last_uses(self.nodes)
        outputs = {t.name for t in self.files.graph.outputs}
        owned: set[str] = set()  # tensors computed here whose arrays no other tensor's array aliases
        for step, (node, attrs) in enumerate(self.nodes):
            names = [t for t in node.inputs if t]
            if node.cim_layer is not None:
                values[node.outputs[0]], trace = self._layer(node, node.cim_layer, values[names[0]], record, work)
                if trace is not None:
                    traces[node.name] = trace
                owned.add(node.outputs[0])
            else:
                free = [not record and t in owned and last[t] == step and t not in outputs for t in names]
                values[node.outputs[0]], reused = self._digital(node, attrs, [values[t] for t in names], free, work)
                if reused:
                    owned.add(node.outputs[0])
            for t in node.inputs:
                if last.get(t) == step and t not in outputs and t not in self.constants and not record:
                    values.pop(t, None)
        return values, traces

    def _layer(self, node: NodeDoc, index: int, x: np.ndarray, record: bool,
               work: Workspace) -> tuple[np.ndarray, LayerTrace | None]:
        """Run CIM layer ``index`` (``node``'s): its outputs, and its trace when ``record`` (else
        ``layer_outputs`` on ``work``); an input its bitline product cannot take
        (``graph.json`` feeds it the wrong tensor) is a ``BuildError``, not numpy's or
        onnxruntime's own error."""
        layer, gemm = self.layers[index], self._gemms[index]
        try:
            if record:
                trace = run_layer(layer, gemm, x)
                return trace.outputs, trace
            return layer_outputs(layer, gemm, x, work), None
        except Exception as exc:  # onnxruntime raises its own types (InvalidArgument, Fail)
            raise BuildError(f"graph.json: CIM layer '{node.name}' cannot run on its input "
                             f"'{node.inputs[0]}' of shape {list(np.shape(x))}: {type(exc).__name__}") from exc

    def _digital(self, node: NodeDoc, attrs: dict[str, Any], args: list[np.ndarray],
                 free: list[bool], work: Workspace) -> tuple[np.ndarray, bool]:
        """A digital node's output, and whether it was written over a ``free`` input (no later
        reader, no alias: ``in_place_target``); a float32 MaxPool runs as ``pool.max_pool``."""
        try:
            target = in_place_target(node.op, args, free)
            if target is not None:
                return IN_PLACE[node.op](args, args[target]), True
            if node.op == "MaxPool" and args[0].dtype == np.float32:
                return max_pool(args[0], attrs, work), False
            if node.op not in LAYOUT_FREE:
                args = [np.ascontiguousarray(a) for a in args]
            return digital_op(node.op, args, attrs), False
        except (ValueError, IndexError, TypeError, KeyError) as exc:  # graph.json wires or sets it wrong
            raise BuildError(f"graph.json: node '{node.name}' ({node.op}) cannot run on its inputs: "
                             f"{type(exc).__name__}: {str(exc)[:120]}") from exc

    def _output_order(self, name: str) -> int:
        return [t.name for t in self.files.graph.outputs].index(name)


#: Digital ops whose every output element is an order-free function of input elements
#: (elementwise, or a maximum): they run on a CIM layer's channel-major output view as it is and
#: give the same bits; every other op gets C-contiguous inputs (a sum's rounding could follow
#: the memory order).
LAYOUT_FREE = frozenset({"Relu", "Add", "Sub", "Mul", "Clip", "MaxPool"})

#: Digital ops the emulator may compute over one of their inputs (``in_place_target``), with
#: the reference's kernels (``cimc.ops.defs``: ``np.maximum(x, 0)``, ``a + b``) and bits.
IN_PLACE: dict[str, Callable[[list[np.ndarray], np.ndarray], np.ndarray]] = {
    "Relu": lambda args, out: np.maximum(args[0], 0, out=out),
    "Add": lambda args, out: np.add(args[0], args[1], out=out),
}


def in_place_target(op: str, args: list[np.ndarray], free: list[bool]) -> int | None:
    """The input that ``op`` of ``IN_PLACE`` may overwrite with its output: the first ``free``
    one (no later reader, no other tensor aliasing it) of the output's shape, all inputs float32
    (the output's dtype then); ``None`` if none may."""
    if op not in IN_PLACE or any(a.dtype != np.float32 for a in args):
        return None
    shape = np.broadcast_shapes(*(a.shape for a in args))
    return next((i for i, a in enumerate(args) if free[i] and a.shape == shape), None)


#: Bytes of partial sums converted and added as one block (``convert_and_add``): about L2-sized.
BLOCK_BYTES = 1 << 20


def _last_uses(nodes: list[tuple[NodeDoc, dict[str, Any]]]) -> dict[str, int]:
    return {t: step for step, (node, _) in enumerate(nodes) for t in node.inputs}


def gemm_session(layer: MacroLayer) -> ort.InferenceSession:
    """The layer's bitline sums as a small ONNX model, its cells included: per segment part
    ``k`` (``MacroLayer.parts``) onnxruntime's batched ``MatMul`` of the columns ``(S_k, G,
    Cout_g·S_w, R_k)`` with the segments' im2col rows ``rows{k}`` ``(S_k, G, R_k, M)``
    (``patches``), ``sums{k}`` ``(S_k, G, Cout_g·S_w, M)``. It uses onnxruntime's default
    threads, as the float model it is compared with does (every core of the machine); they do
    not spin between runs, where they would take a core from the numpy work between two layers.
    (On the 2-core benchmark machine under load one thread cost less, ResNet-50 batch 8 0.81–0.91
    s CPU a run against 0.86–1.04 s, ``benchmarks/results/emulator.md``; on an idle many-core
    machine it would leave every other core idle.)"""
    nodes, inputs, outputs, weights = [], [], [], []
    for k, part in enumerate(layer.parts):
        weight = np.ascontiguousarray(part.weight, dtype=np.float32)
        s_count, groups, _, rows = weight.shape
        nodes.append(helper.make_node("MatMul", [f"columns{k}", f"rows{k}"], [f"sums{k}"]))
        inputs.append(helper.make_tensor_value_info(f"rows{k}", TensorProto.FLOAT, [s_count, groups, rows, "m"]))
        outputs.append(helper.make_tensor_value_info(f"sums{k}", TensorProto.FLOAT, None))
        weights.append(numpy_helper.from_array(weight, f"columns{k}"))
    graph = helper.make_graph(nodes, "bitline_sums", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
                              ir_version=EXPORT_IR_VERSION)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def patches(layer: MacroLayer, codes: np.ndarray, work: Workspace | None = None) -> list[np.ndarray]:
    """Per segment part, ``(S_k, G, R_k, Ho·Wo·N)`` float32: the input code every segment's
    wordline sees at each output pixel, ``x_pad[n, c, h·s_h + i·d_h, w·s_w + j·d_w]`` at the
    taps ``(c, i, j)`` of ``SegmentPart.taps``, pixels ordered ``(h, w, n)``. The codes are
    first laid out ``(C, H, W, N)`` (one copy, the padding included, none when they are laid out
    so already) so that the gather copies runs of ``Wo·N`` values; an unpadded ``1 × 1`` kernel
    takes whole rows of that layout, and a part whose wordlines are whole channels in order
    (``SegmentPart.channels``) a slice of it: a view for ``1 × 1``, else one strided copy (no
    gather). Scratch arrays come from ``work`` (a new ``Workspace`` by default)."""
    work = Workspace() if work is None else work
    n, c, h, w = codes.shape
    if reads_channels(layer):
        (sh, sw), (ho, wo) = layer.strides, _spatial(layer, h, w)
        rows = _laid_out(work, codes.transpose(1, 2, 3, 0)[:, ::sh, ::sw]).reshape(c, ho * wo * n)
        return [_channel_rows(rows, part) for part in layer.parts]
    padded, interior = padded_codes(layer, codes.shape, work)
    interior[...] = codes
    return window_rows(layer, padded, work)


def reads_channels(layer: MacroLayer) -> bool:
    """Whether the layer's im2col rows are channels of its input: an unpadded ``1 × 1`` kernel."""
    return layer.kernel == (1, 1) and not any(layer.pads)


def padded_codes(layer: MacroLayer, shape: tuple[int, ...], work: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """``work``'s ``laid`` buffer as the zero-padded ``(C, H + pads, W + pads, N)`` codes of an
    input of ``shape`` ``(N, C, H, W)``, and its interior as an ``(N, C, H, W)`` view to write
    the codes into (the border is zeroed here)."""
    n, c, h, w = shape
    t, left, b, r = layer.pads
    padded = work.array("laid", (c, h + t + b, w + left + r, n))
    padded[:, :t] = padded[:, t + h:] = padded[:, :, :left] = padded[:, :, left + w:] = 0
    return padded, padded[:, t:t + h, left:left + w].transpose(3, 0, 1, 2)


def window_rows(layer: MacroLayer, padded: np.ndarray, work: Workspace) -> list[np.ndarray]:
    """``patches`` of the padded codes ``(C, H + pads, W + pads, N)`` (``padded_codes``)."""
    c, hp, wp, n = padded.shape
    t, left, b, r = layer.pads
    ho, wo = _spatial(layer, hp - t - b, wp - left - r)
    (sh, sw), (kh, kw), (dh, dw) = layer.strides, layer.kernel, layer.dilations
    sc, sy, sx, sn = padded.strides
    win = as_strided(padded, (c, kh, kw, ho, wo, n), (sc, dh * sy, dw * sx, sh * sy, sw * sx, sn), writeable=False)
    out = []
    for k, part in enumerate(layer.parts):
        channel, row, col = part.taps
        if part.channels is None:
            out.append(win[channel, row, col].reshape(*channel.shape, ho * wo * n))
            continue
        c0, c1 = part.channels
        rows = work.array(f"rows{k}", (*channel.shape, ho * wo * n))
        np.copyto(rows.reshape(c1 - c0, kh, kw, ho, wo, n), win[c0:c1])
        out.append(rows)
    return out


def _channel_rows(rows: np.ndarray, part: SegmentPart) -> np.ndarray:
    """``rows[c]`` ``(S_k, G, R_k, M)`` at the part's channels ``c`` of a ``(C, M)`` matrix: a
    slice (a view) when they are consecutive (``SegmentPart.channels``), else a gather."""
    channel, _, _ = part.taps
    if part.channels is None:
        return rows[channel]
    c0, c1 = part.channels
    return rows[c0:c1].reshape(*channel.shape, rows.shape[1])


def _laid_out(work: Workspace, a: np.ndarray) -> np.ndarray:
    """``a`` itself when C-contiguous, else its copy in ``work``'s ``laid`` buffer."""
    if a.flags.c_contiguous:
        return a
    laid = work.array("laid", a.shape)
    np.copyto(laid, a)
    return laid


def bitline_sums(layer: MacroLayer, gemm: ort.InferenceSession, codes: np.ndarray,
                 work: Workspace | None = None) -> list[np.ndarray]:
    """Per segment part, ``(S_k, Cout·S_w, Ho, Wo, N)`` partial sums of its segments and
    bitlines for integer-valued ``codes`` ``(N, C, H, W)``: one batched matrix product. The
    products and every partial sum are integers below ``2^24`` (``quantize`` refuses a layer
    whose sums could reach it), so float32 holds them exactly whatever order the product sums in.
    The im2col rows are scratch of ``work`` (``patches``)."""
    n, _, h, w = codes.shape
    return products(layer, gemm, patches(layer, codes, work), _spatial(layer, h, w), n)


def products(layer: MacroLayer, gemm: ort.InferenceSession, rows: list[np.ndarray], spatial: tuple[int, int],
             n: int) -> list[np.ndarray]:
    """``bitline_sums`` of the parts' im2col ``rows`` (``patches``), ``spatial = (Ho, Wo)``."""
    ho, wo = spatial
    feeds = {f"rows{k}": r for k, r in enumerate(rows)}
    return [_channel_major(p, ho, wo, n) for p in gemm.run(None, feeds)]


def _channel_major(p: np.ndarray, ho: int, wo: int, n: int) -> np.ndarray:
    """A part's product ``(S_k, G, Cout_g·S_w, M)`` as ``(S_k, Cout·S_w, Ho, Wo, N)``."""
    s_count, groups, width, _ = p.shape
    return p.reshape(s_count, groups * width, ho, wo, n)


def segment_order(layer: MacroLayer, parts: list[np.ndarray]) -> np.ndarray:
    """The parts' arrays ``(S_k, …)`` as one ``(Seg, …)`` array in segment order (a copy)."""
    order = np.argsort(np.concatenate([part.segments for part in layer.parts]))
    return np.concatenate(parts)[order]


def _spatial(layer: MacroLayer, h: int, w: int) -> tuple[int, int]:
    """``(Ho, Wo)`` of the layer's convolution on an ``h × w`` input (``windows.window_out``)."""
    (kh, kw), (dh, dw) = layer.kernel, layer.dilations
    return window_out((h, w), ((kh - 1) * dh + 1, (kw - 1) * dw + 1), layer.strides, layer.pads)


def convert_and_add(layer: MacroLayer, parts: list[np.ndarray], work: Workspace,
                    out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ADC codes of the partial sums of every segment part ``(S_k, Cout, …)`` in place, ``p̂ =
    clip(round(p / S_ADC[o]), ±(2^(b−1) − 1))``, the adder tree ``P = Σ_s p̂`` and the output
    ``y = P · scale + b'``, both ``(Cout, …)``, done on blocks of output channels of about
    ``BLOCK_BYTES`` so that the division, rounding, clipping and sum of a block read it from the
    cache rather than from memory (four passes over ``p``, two over ``P``). ``P`` is exact in
    float32 in any order (integers below ``2^24``), so the parts add in any order. A layer of
    one segment has no adder tree: ``P`` is its codes ``parts[0][0]``; else ``P`` is ``work``'s
    ``total``. ``y`` is written into ``out`` (new by default), which may be ``parts[0][0]``: a
    block's output is written after its codes are summed."""
    cout = layer.cout
    step, scale, bias = (np.broadcast_to(np.ravel(np.asarray(v, dtype=np.float32)), (cout,))
                         for v in (layer.adc_step, layer.scale, layer.bias))
    block = max(1, BLOCK_BYTES * cout // sum(p.nbytes for p in parts))
    tree = layer.segments > 1
    first, *_ = parts
    total = work.array("total", first.shape[1:]) if tree else first.squeeze(0)
    y = np.empty(total.shape, dtype=np.float32) if out is None else out
    for start in range(0, cout, block):
        cols = slice(start, start + block)
        for k, p in enumerate(parts):
            codes = numerics.adc_codes(p[:, cols], step[cols], layer.adc_bits, channel_axis=1, out=p[:, cols])
            if tree:
                _add_segments(codes, total[cols], k == 0)
        numerics.layer_output(total[cols], scale[cols], bias[cols], channel_axis=0, out=y[cols])
    return total, y


def _add_segments(codes: np.ndarray, total: np.ndarray, first: bool) -> None:
    """``total`` (``=`` when ``first``, else ``+=``) the sum over axis 0 of ``codes``."""
    if first:
        np.sum(codes, axis=0, dtype=np.float32, out=total)
    else:
        total += np.sum(codes, axis=0, dtype=np.float32)


def run_layer(layer: MacroLayer, gemm: ort.InferenceSession, x: np.ndarray, record: bool = True) -> LayerTrace:
    """One CIM layer on float input ``x`` (module doc), computed channel-major ``(S, Cout, Ho,
    Wo, N)``. The outputs are a view of the channel-major ``(Cout, Ho, Wo, N)`` array with the
    shape ``(N, Cout, Ho, Wo)`` (the next layer's ``patches`` wants that memory order); the
    trace's sums and ADC codes are transposed to their layout once when ``record``, else the
    sums are a view too and the ADC codes are left out (zero conversions). Every array is new."""
    a = _conv_input(layer, x)
    codes = numerics.quantize(a, layer.a_step, layer.a_bits, layer.a_signed)
    if layer.sliced:
        adc, total = _sliced_conversions(layer, gemm, codes, record)
        y = numerics.layer_output(total, layer.scale, layer.bias, out=None if record else total)
    else:
        work = Workspace()
        p = bitline_sums(layer, gemm, codes, work)
        cm_total, cm_y = convert_and_add(layer, p, work)
        y = cm_y.transpose(3, 0, 1, 2)
        if record:
            total = np.ascontiguousarray(cm_total.transpose(3, 0, 1, 2))
            adc = segment_order(layer, p).transpose(4, 0, 1, 2, 3)
        else:
            total = cm_total.transpose(3, 0, 1, 2)
            adc = np.empty((codes.shape[0], 0, *total.shape[1:]), dtype=np.float32)
    if layer.kind == "conv":
        return LayerTrace(codes, adc, total, y)
    lead = x.shape[:-1]
    return LayerTrace(codes.reshape(x.shape), adc.reshape(codes.shape[0], adc.shape[1], layer.cout),
                      total.reshape(*lead, layer.cout), y.reshape(*lead, layer.cout))


def layer_outputs(layer: MacroLayer, gemm: ort.InferenceSession, x: np.ndarray, work: Workspace) -> np.ndarray:
    """``run_layer(…).outputs`` alone (the same bits): the DAC codes, im2col rows and sums are
    scratch of ``work`` and the output ``(N, Cout, Ho, Wo)`` a view of the first segment's
    bitline sums, converted in place (``convert_and_add``), so that a run allocates no large
    array after its first."""
    if layer.sliced:
        return run_layer(layer, gemm, x, record=False).outputs
    a = _conv_input(layer, x)
    if reads_channels(layer):
        p = bitline_sums(layer, gemm, _dac(layer, a, work.like("codes", a)), work)
    else:  # the DAC writes the padded layout itself: no copy of the codes
        padded, interior = padded_codes(layer, a.shape, work)
        _dac(layer, a, interior)
        n, _, h, w = a.shape
        p = products(layer, gemm, window_rows(layer, padded, work), _spatial(layer, h, w), n)
    _, y = convert_and_add(layer, p, work, out=p[0][0])
    out = y.transpose(3, 0, 1, 2)
    return out if layer.kind == "conv" else out.reshape(*x.shape[:-1], layer.cout)


def _dac(layer: MacroLayer, a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The layer's DAC codes of ``a`` written into ``out`` (``numerics.quantize``)."""
    return numerics.quantize(a, layer.a_step, layer.a_bits, layer.a_signed, out=out)


def _conv_input(layer: MacroLayer, x: np.ndarray) -> np.ndarray:
    """``x`` as a convolution's ``(N, C, H, W)`` input (a fully connected layer's ``(…, C)`` as
    ``(…, C, 1, 1)``)."""
    return x if layer.kind == "conv" else x.reshape(-1, x.shape[-1], 1, 1)


def _sliced_conversions(layer: MacroLayer, gemm: ort.InferenceSession, codes: np.ndarray,
                        record: bool) -> tuple[np.ndarray, np.ndarray]:
    """ADC codes (in trace order when ``record``) and shift-added sums ``P`` of a sliced layer,
    computed on the bitline sums in the order ``(T, N, Ho, Wo, Seg, Cout, S)``."""
    cycles = dac_cycles(codes, layer.a_slices, layer.dac_bits)
    p = segment_order(layer, bitline_sums(layer, gemm, cycles))  # (Seg, Cout·S, Ho, Wo, T·N)
    seg, _, ho, wo, _ = p.shape
    p = p.reshape(seg, layer.cout, layer.w_slices, ho, wo, layer.a_slices, codes.shape[0])
    p = np.ascontiguousarray(p.transpose(5, 6, 3, 4, 0, 1, 2))
    steps = adc_steps(layer.adc_step, layer.adc_shift, p.shape)
    adc = numerics.quantize(p, steps, layer.adc_bits, True, out=p)
    total = shift_add(adc, layer.cell_bits, layer.dac_bits, layer.adc_shift).transpose(0, 3, 1, 2)
    return (conversion_order(adc) if record else adc), total
