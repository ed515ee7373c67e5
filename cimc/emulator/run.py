"""Running a build the way the macros would, from the build files alone.

Per CIM layer, for a batch of ``N`` inputs (no Python loop over samples, pixels, segments
or ADC groups):

1. DAC codes ``a_q = clip(round(x / S_A))`` (``cimc.quant.numerics``), converted and fed in one
   compiled pass straight into the layout the im2col reads (``patches``,
   ``kernels.dac_codes``);
2. every segment's bitline sums at once, pixel-major: one batched matrix product per segment
   part (``MacroLayer.parts``: the full segments, and the shorter ones padded to their own
   longest) of the pixel-major im2col rows each segment's wordlines see (``patches``, ``(S,
   G, M, R)``, wordlines of whole channels fed channel-innermost, ``layers.feed_order``; a part
   of thinner runs, ``layers.pixel_rows``, fed channel-major and transposed inside the model) with
   the constant macro columns on the right, ``(S, G, M, Cout_g·S_w)`` (``cimc.emulator.product``): onnxruntime's
   ``MatMulInteger`` (uint8 input digits, int8 cells, int32 sums) where the digits fit and a
   pair of products cannot saturate int16, else its float ``MatMul``; the products and sums
   are integers below ``2^24`` (the quantize pass refuses a layer whose sums could reach it),
   exact in both;
3. one ADC conversion per bitline and pixel: ``p̂ = clip(round(p / S_ADC), ±(2^(b−1) − 1))``
   (an int32 sum converted to float32 first, exactly);
4. the adder tree ``P = Σ_s p̂``, then the shifter (or scale) and the bias:
   ``y = P · scale + b'`` (3 and 4 in compiled loops, ``cimc.emulator.kernels``, one pass over
   each cache-sized block of pixels; a Relu that alone reads the layer's output is applied in
   the same pass, ``fused_relus``), pixel-major as computed: ``(Ho, Wo, N, Cout)``.

The compiled loops do numpy's float32 operations in numpy's order, so the bits are those of
``cimc.quant.numerics`` (``tests/test_emulator_kernels.py``; every bit-exactness test runs
them).

Activations stay pixel-major: a CIM layer's output is a ``(N, Cout, Ho, Wo)`` view of its
``(Ho, Wo, N, Cout)`` array (a grouped layer's is reordered from ``(G, M, Cout_g)`` once), which
the digital ops of ``LAYOUT_FREE`` (elementwise, max; MaxPool keeps the layout) take as it is
and the next layer's ``patches`` reads without a transposition, its im2col copying runs of
channels; every other digital op, and the model outputs, get C-contiguous arrays. (Session 11
kept them channel-major, ``(Cout, Ho, Wo, N)``: each layer's output was transposed once, and
its im2col rows again inside the product model.)

A bit-sliced layer (``cimc.quant.slicing``) feeds its ``T`` DAC cycles as ``T`` batches of the same
convolution over its ``S`` digit columns per channel, converts every (cycle, segment, column)
with its kind's ADC step ``S_ADC·2^−m_{t,j}``, and shift-adds the codes in hardware order
(``cimc.emulator.slices``); its traced ADC codes are ``(N, Seg·T·S, Cout, Ho, Wo)``.

A run without ``record`` takes its scratch from the emulator's ``Workspace`` (``layer_outputs``):
a float32 copy of an input not laid out pixel-major, the fed DAC codes and their padded
layout, the im2col rows and a grouped layer's output before its reordering; the bitline sums
(onnxruntime's) and the output (which the adder tree sums into) are new arrays; Relu and Add overwrite an
input no later node reads (``in_place_target``). A recording run builds every array new and
fuses nothing.

A batch of a model that does not mix its samples runs in lanes (``cimc.emulator.lanes``): one
chunk of samples per core (at most ``DEFAULT_MAX_LANES``), each through the whole model on its
own thread, with its own workspace and bitline products on the lane's share of the cores; the
outputs are concatenated (the same bits).

Digital ops run with the reference's kernels and rounding rules
(``cimc.quant.reference.digital_op``; MaxPool as ``cimc.emulator.pool.max_pool``, the same
bits). ``Emulator.run`` returns the outputs and, with
``record``, per-layer traces (input codes, ADC codes ``(N, S, Cout, Ho, Wo)``, sums, outputs).
(Measured on VGG9, batch 64: onnxruntime's grouped convolution of the gathered channels ran
2.4–2.6× the float model's CPU time, this batched MatMul 2.2×; numpy's stacked matmul was 2–6×
slower than onnxruntime's MatMul on these shapes; session 8: 1.3× and 1.9× the float model's
CPU time on VGG9 batch 64 and ResNet-50 batch 8; session 9, without the page faults of fresh
arrays: 1.2× and 1.4×; session 10, the integer pixel-major product: ResNet-50's emulator
0.8–0.85× its former time; session 11, lanes: 0.72–0.82× its unsplit wall time on both nets;
session 12, the compiled ADC and DAC and the fused Relu: ResNet-50 at batch 8 from 1.8–1.9× to
1.4–1.5× the float model's wall time, then with pixel-major activations 1.17–1.29×.
``benchmarks/results/emulator.md``.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cimc.backend.compute_files import decode_attr
from cimc.build.emulator_files import BuildFiles, read_build
from cimc.check.emulator import check_build
from cimc.documents.graph import NodeDoc, TensorDoc
from cimc.emulator import kernels
from cimc.emulator.lanes import Lanes, default_lanes, lane_feeds, lane_threads
from cimc.emulator.layers import MacroLayer, SegmentPart, macro_layers, pixel_rows
from cimc.emulator.pool import max_pool
from cimc.emulator.product import BitlineProduct, bitline_product
from cimc.emulator.slices import adc_steps, conversion_order, dac_cycles, shift_add
from cimc.emulator.workspace import Workspace
from cimc.errors import BuildError, UsageError
from cimc.ops.windows import window_out
from cimc.quant import numerics
from cimc.quant.batching import mixes_batch, split_batch
from cimc.quant.reference import CompiledRun, LayerTrace, concat_runs, digital_op


class Emulator:
    """A validated build, ready to run (module doc)."""

    def __init__(self, files: BuildFiles, lanes: int | None = None) -> None:
        """``lanes``: the most threads a run splits its batch over (``cimc.emulator.lanes``;
        default one per core, at most ``DEFAULT_MAX_LANES``; 1 never splits)."""
        check_build(files)
        self.files = files
        self.layers = macro_layers(files)
        self.nodes = [(n, {k: decode_attr(v) for k, v in n.attrs.items()}) for n in files.graph.nodes]
        self.constants = {t: files.constants[key] for t, key in files.graph.constants.items()}
        self._gemms = [bitline_product(layer) for layer in self.layers]
        self._relu_fused = fused_relus(self.nodes, {t.name for t in files.graph.outputs})
        self._work = Workspace()  # the scratch of runs without record, one run at a time (``_values``)
        self._work_lock = threading.Lock()
        self.lane_count = default_lanes() if lanes is None else max(1, lanes)
        self._lanes: Lanes | None = None  # made by the first run that splits (``_lane_state``)
        self._lanes_made = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, lanes: int | None = None) -> Emulator:
        """Read, authenticate and check the build at ``path`` (``lanes``: ``__init__``)."""
        return cls(read_build(path), lanes)

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
        of another leading size carries no batch: it is whole in every chunk); any other model
        runs its batch in lanes, one per core (``cimc.emulator.lanes``), the same bits."""
        feeds = self.feeds(x)
        batch = self.files.graph.batch
        batched = frozenset(t.name for t in self.inputs if t.shape[:1] == [batch])
        if not any(mixes_batch(node.op, attrs) for node, attrs in self.nodes):
            return self._run_lanes(lane_feeds(feeds, batched, self.lane_count), record)
        return concat_runs([self._run(chunk, record) for chunk in split_batch(feeds, batch, batched)])

    def _run_lanes(self, chunks: list[dict[str, np.ndarray]], record: bool) -> CompiledRun:
        """The chunks of one batch, each on its own lane, as one run; on the caller's thread
        alone when there is one chunk, or while another thread's run holds the lanes."""
        if len(chunks) == 1:
            return self._run(chunks[0], record)
        lanes = self._lane_state()
        if not lanes.lock.acquire(blocking=False):
            return concat_runs([self._run(chunk, record) for chunk in chunks])
        try:
            runs = lanes.map(lambda chunk, work: self._finish(*self._compute(chunk, record, work, lanes.products)),
                             chunks)
        finally:
            lanes.lock.release()
        return concat_runs(runs)

    def _lane_state(self) -> Lanes:
        """The emulator's lanes, made once: its layers' bitline products on ``lane_threads``."""
        with self._lanes_made:
            if self._lanes is None:
                threads = lane_threads(self.lane_count)
                self._lanes = Lanes([bitline_product(layer, threads) for layer in self.layers], self.lane_count)
            return self._lanes

    def tensors(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor the nodes compute, by name, for one batch of the compiled batch size
        (``cimc validate`` compares them with onnxruntime on ``model.cim.onnx``)."""
        values, _ = self._values(self.feeds(x), True)
        return {t: values[t] for node, _ in self.nodes for t in node.outputs if t in values}

    def _run(self, feeds: dict[str, np.ndarray], record: bool) -> CompiledRun:
        return self._finish(*self._values(feeds, record))

    def _finish(self, values: dict[str, np.ndarray], traces: dict[str, LayerTrace]) -> CompiledRun:
        """The run's outputs, in the graph's order, and its traces."""
        outputs = {t.name for t in self.files.graph.outputs}
        ordered = sorted(outputs, key=self._output_order)
        return CompiledRun({name: np.ascontiguousarray(values[name]) for name in ordered}, traces)

    def _values(self, feeds: dict[str, np.ndarray], record: bool) -> tuple[dict[str, np.ndarray],
                                                                            dict[str, LayerTrace]]:
        """Every tensor of one batch (each freed after its last reader unless ``record``), on the
        emulator's workspace, or, while another thread's run holds that one, on a new workspace
        (runs from several threads stay correct; only the first reuses memory)."""
        if not self._work_lock.acquire(blocking=False):
            return self._compute(feeds, record, Workspace(), self._gemms)
        try:
            return self._compute(feeds, record, self._work, self._gemms)
        finally:
            self._work_lock.release()

    def _compute(self, feeds: dict[str, np.ndarray], record: bool, work: Workspace,
                 gemms: list[BitlineProduct]) -> tuple[dict[str, np.ndarray], dict[str, LayerTrace]]:
        """Every tensor of one batch on ``work`` with the bitline products ``gemms``, and the
        traces when ``record`` (``_values``)."""
        values: dict[str, np.ndarray] = {**self.constants, **feeds}
        traces: dict[str, LayerTrace] = {}
        last = _last_uses(self.nodes)
        outputs = {t.name for t in self.files.graph.outputs}
        owned: set[str] = set()  # tensors computed here whose arrays no other tensor's array aliases
        for step, (node, attrs) in enumerate(self.nodes):
            names = [t for t in node.inputs if t]
            if node.cim_layer is not None:
                relu = not record and node.outputs[0] in self._relu_fused
                values[node.outputs[0]], trace = self._layer(node, gemms[node.cim_layer], values[names[0]], record,
                                                             work, relu)
                if trace is not None:
                    traces[node.name] = trace
                owned.add(node.outputs[0])
            elif not record and node.op == "Relu" and names[0] in self._relu_fused:  # its layer applied it
                values[node.outputs[0]] = values[names[0]]
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

    def _layer(self, node: NodeDoc, gemm: BitlineProduct, x: np.ndarray, record: bool,
               work: Workspace, relu: bool = False) -> tuple[np.ndarray, LayerTrace | None]:
        """Run ``node``'s CIM layer with its bitline product ``gemm``: its outputs, and its trace
        when ``record`` (else ``layer_outputs`` on ``work``, the Relu after it applied when
        ``relu``: ``fused_relus``); an input its bitline product cannot
        take (``graph.json`` feeds it the wrong tensor) is a ``BuildError``, not numpy's or
        onnxruntime's own error."""
        assert node.cim_layer is not None
        layer = self.layers[node.cim_layer]
        try:
            if record:
                trace = run_layer(layer, gemm, x)
                return trace.outputs, trace
            return layer_outputs(layer, gemm, x, work, relu), None
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
#: (elementwise, or a maximum): they run on a CIM layer's pixel-major output view as it is and
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


def fused_relus(nodes: list[tuple[NodeDoc, dict[str, Any]]], outputs: set[str]) -> frozenset[str]:
    """The CIM layers' outputs that a single ``Relu`` reads and nothing else (no other node, no
    graph output): a run without ``record`` applies that Relu in the layer's output pass
    (``kernels.affine_rows``, ``np.maximum(y, 0)``'s bits) and the Relu node hands its input on
    as its output, saving a pass over the activations."""
    readers: dict[str, list[str]] = {}
    for node, _ in nodes:
        for t in node.inputs:
            readers.setdefault(t, []).append(node.op)
    return frozenset(node.outputs[0] for node, _ in nodes
                     if node.cim_layer is not None and node.outputs[0] not in outputs
                     and readers.get(node.outputs[0]) == ["Relu"])


#: Bytes of partial sums converted and added as one block (``convert_and_add``): about L2-sized.
BLOCK_BYTES = 1 << 20


def _last_uses(nodes: list[tuple[NodeDoc, dict[str, Any]]]) -> dict[str, int]:
    return {t: step for step, (node, _) in enumerate(nodes) for t in node.inputs}


#: A DAC ``(S_A, lo, hi)``: ``q(x) = clip(rint(x / S_A), lo, hi)`` in float32.
Dac = tuple[float, float, float]

#: The DAC of values that are codes already: ``q(x) = x`` for every integer-valued ``x``.
IDENTITY: Dac = (1.0, -np.inf, np.inf)


def patches(layer: MacroLayer, codes: np.ndarray, work: Workspace | None = None,
            feed: tuple[type[np.generic], int] = (np.float32, 0), dac: Dac = IDENTITY) -> list[np.ndarray]:
    """Per segment part, ``(S_k, G, Ho·Wo·N, R_k)`` of dtype ``feed[0]`` (``(S_k, G, R_k,
    Ho·Wo·N)`` for a part fed channel-major, ``layers.pixel_rows``), pixels ordered ``(h, w,
    n)``: the code each of the part's wordlines (in ``layers.feed_order``) sees at each output
    pixel plus ``feed[1]`` (``BitlineProduct.offset``), ``q(x_pad[n, c, h·s_h + i·d_h, w·s_w +
    j·d_w])`` at the wordline's tap ``(c, i, j)`` (``SegmentPart.taps``), where ``q`` is the
    DAC ``dac`` (``(S_A, lo, hi)``: ``clip(rint(x / S_A), lo, hi)``; ``IDENTITY`` for
    ``codes`` that are codes already). The codes are converted and laid out pixel-major ``(H, W,
    N, C)`` in one pass (``kernels.dac_codes``; a CIM layer's output is laid out so already),
    then copied into the padded layout, so that the im2col copies runs of a segment's ``C_s``
    channels (``_part_rows``); an unpadded ``1 × 1`` kernel reads the laid-out codes as its
    rows (the DAC converts only the pixels its strides read): a view when one segment takes
    every channel. Scratch arrays come from ``work`` (a new ``Workspace`` by default)."""
    work = Workspace() if work is None else work
    x = codes.transpose(2, 3, 0, 1)
    if reads_channels(layer):
        sh, sw = layer.strides
        source = _fed(x[::sh, ::sw], dac, feed, work, "laid")
        window = Window((1, 1), (1, 1), (1, 1), source.shape[:2])
    else:
        h, w = x.shape[:2]
        t, left, _, _ = layer.pads
        source = padded_codes(layer, codes.shape, work, feed)
        source[t:t + h, left:left + w] = _fed(x, dac, feed, work, "fed")
        window = Window(layer.kernel, layer.strides, layer.dilations, _spatial(layer, h, w))
    thin = not all(pixel_rows(part, layer.kernel) for part in layer.parts)
    channel_windows = _channel_windows(source, window, work) if thin else None
    return [_part_rows(part, source, window, channel_windows, work, f"rows{k}") for k, part in enumerate(layer.parts)]


class Window(NamedTuple):
    """The convolution window over a pixel-major source ``(H', W', N, C)`` (``patches``): output
    pixel ``(h, w)`` reads ``source[h·s_h + i·d_h, w·s_w + j·d_w]`` at tap ``(i, j)``."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    spatial: tuple[int, int]  # (Ho, Wo)


def _part_rows(part: SegmentPart, source: np.ndarray, window: Window, channel_windows: np.ndarray | None,
               work: Workspace, name: str) -> np.ndarray:
    """The part's rows (``patches``) of the pixel-major ``source``. Pixel-major ``(S_k, G, M,
    R_k)`` for whole channels of at least ``MIN_PIXEL_RUN`` (``layers.pixel_rows``): a copy of
    runs of ``C_s`` channels into ``work``'s buffer ``name`` (a compiled loop was 1.2–1.3× slower
    than numpy's strided copy on ResNet-50 and VGG9), or the source itself when it is the rows
    (one segment of every channel of a ``1 × 1`` kernel). Else channel-major ``(S_k, G, R_k,
    M)`` from ``channel_windows`` (``_channel_windows``, made once per layer): runs of ``Wo·N``
    pixels, a slice for whole channels, else a gather of each wordline's tap."""
    (ho, wo), n = window.spatial, source.shape[2]
    s, g, r = part.taps[0].shape
    if not pixel_rows(part, window.kernel):
        assert channel_windows is not None
        windows = channel_windows
        if part.channels is None:
            channel, row, col = part.taps
            return windows[channel, row, col].reshape(s, g, r, ho * wo * n)
        c0, c1 = part.channels
        rows = work.array(name, (s, g, r, ho * wo * n), source.dtype.type)
        np.copyto(rows.reshape(windows[c0:c1].shape), windows[c0:c1])
        return rows
    assert part.channels is not None
    (kh, kw), (c0, c1) = window.kernel, part.channels
    taps = _pixel_windows(source, window)[..., c0:c1].reshape(ho, wo, n, kh, kw, s, g, r // (kh * kw))
    taps = taps.transpose(5, 6, 0, 1, 2, 3, 4, 7)  # (S, G, Ho, Wo, N, kh, kw, C_s)
    if taps.flags.c_contiguous:  # one segment of every channel of a 1 × 1 kernel: the source itself
        return taps.reshape(s, g, ho * wo * n, r)
    rows = work.array(name, (s, g, ho * wo * n, r), source.dtype.type)
    np.copyto(rows.reshape(taps.shape), taps)
    return rows


def _pixel_windows(source: np.ndarray, window: Window) -> np.ndarray:
    """The read-only ``(Ho, Wo, N, kh, kw, C)`` view whose ``[h, w, n, i, j, c]`` is
    ``source[h·s_h + i·d_h, w·s_w + j·d_w, n, c]`` (pixel-major)."""
    (ho, wo), (kh, kw), (sh, sw), (dh, dw) = window.spatial, window.kernel, window.strides, window.dilations
    sy, sx, sn, sc = source.strides
    _, _, n, c = source.shape
    return as_strided(source, (ho, wo, n, kh, kw, c), (sh * sy, sw * sx, sn, dh * sy, dw * sx, sc), writeable=False)


def _channel_windows(source: np.ndarray, window: Window, work: Workspace) -> np.ndarray:
    """The read-only ``(C, kh, kw, Ho, Wo, N)`` view whose ``[c, i, j, h, w, n]`` is
    ``source[h·s_h + i·d_h, w·s_w + j·d_w, n, c]``, over a channel-major copy of the pixel-major
    ``source`` in ``work``'s ``channels`` buffer."""
    laid = work.array("channels", (source.shape[3], *source.shape[:3]), source.dtype.type)
    np.copyto(laid, source.transpose(3, 0, 1, 2))
    (ho, wo), (kh, kw), (sh, sw), (dh, dw) = window.spatial, window.kernel, window.strides, window.dilations
    sc, sy, sx, sn = laid.strides
    return as_strided(laid, (laid.shape[0], kh, kw, ho, wo, laid.shape[3]),
                      (sc, dh * sy, dw * sx, sh * sy, sw * sx, sn), writeable=False)


def layer_dac(layer: MacroLayer) -> Dac:
    """The layer's DAC (``numerics.quantize`` with ``S_A``, ``a_bits``, ``a_signed``)."""
    lo, hi = numerics.code_range(layer.a_bits, layer.a_signed)
    return layer.a_step, lo, hi


def _float32(x: np.ndarray, work: Workspace) -> np.ndarray:
    """``x`` itself when it is C-contiguous float32 (a CIM layer's output seen pixel-major),
    else its copy in ``work``'s ``input`` buffer."""
    if x.flags.c_contiguous and x.dtype == np.float32:
        return x
    out = work.array("input", x.shape)
    np.copyto(out, x, casting="unsafe")
    return out


def _fed(x: np.ndarray, dac: Dac, feed: tuple[type[np.generic], int], work: Workspace, name: str) -> np.ndarray:
    """The fed codes ``q(x) + offset`` of ``x`` in dtype ``feed[0]``, C-contiguous: for codes
    fed as they are (``IDENTITY``, float32, no offset) ``x`` itself or its float32 copy
    (``_float32``), else ``kernels.dac_codes`` into ``work``'s buffer ``name``, every value a
    float32 (numpy's arithmetic)."""
    if dac is IDENTITY and feed == (np.float32, 0):
        return _float32(x, work)
    out = work.array(name, x.shape, feed[0])
    step, lo, hi = (np.float32(v) for v in dac)
    kernels.dac_codes(_float32(x, work), step, lo, hi, np.float32(feed[1]), out)
    return out


def reads_channels(layer: MacroLayer) -> bool:
    """Whether the layer's im2col rows are channels of its input: an unpadded ``1 × 1`` kernel."""
    return layer.kernel == (1, 1) and not any(layer.pads)


def padded_codes(layer: MacroLayer, shape: tuple[int, ...], work: Workspace,
                 feed: tuple[type[np.generic], int]) -> np.ndarray:
    """``work``'s ``laid`` buffer as the padded pixel-major ``(H + pads, W + pads, N, C)`` fed
    codes (dtype and offset ``feed``) of an input of ``shape`` ``(N, C, H, W)``: the border set
    here to the fed code of 0, the interior left for the DAC."""
    n, c, h, w = shape
    t, left, b, r = layer.pads
    padded = work.array("laid", (h + t + b, w + left + r, n, c), feed[0])
    padded[:t] = padded[t + h:] = padded[:, :left] = padded[:, left + w:] = feed[1]
    return padded


def bitline_sums(layer: MacroLayer, gemm: BitlineProduct, codes: np.ndarray,
                 work: Workspace | None = None) -> list[np.ndarray]:
    """Per segment part, ``(S_k, G, M, Cout_g·S_w)`` partial sums of its segments and bitlines
    at each pixel ``M = (Ho, Wo, N)`` for integer-valued ``codes`` ``(N, C, H, W)``: one batched
    matrix product (``cimc.emulator.product``), int32 or float32. The products and every partial
    sum are integers below ``2^24`` (``quantize`` refuses a layer whose sums could reach it), so
    float32 holds them exactly whatever order the product sums in. The im2col rows are scratch
    of ``work`` (``patches``)."""
    return products(gemm, patches(layer, codes, work, (gemm.dtype, gemm.offset)))


def products(gemm: BitlineProduct, rows: list[np.ndarray]) -> list[np.ndarray]:
    """``bitline_sums`` of the parts' im2col ``rows`` (``patches``)."""
    return list(gemm.session.run(None, {f"rows{k}": r for k, r in enumerate(rows)}))


def channel_major(parts: list[np.ndarray], spatial: tuple[int, int], n: int) -> list[np.ndarray]:
    """Pixel-major parts ``(S_k, G, M, W)`` as float32 ``(S_k, G·W, Ho, Wo, N)`` (new arrays)."""
    ho, wo = spatial
    return [np.ascontiguousarray(p.transpose(0, 1, 3, 2), dtype=np.float32)
            .reshape(p.shape[0], p.shape[1] * p.shape[3], ho, wo, n) for p in parts]


def segment_order(layer: MacroLayer, parts: list[np.ndarray]) -> np.ndarray:
    """The parts' arrays ``(S_k, …)`` as one ``(Seg, …)`` array in segment order (a copy)."""
    order = np.argsort(np.concatenate([part.segments for part in layer.parts]))
    return np.concatenate(parts)[order]


def _spatial(layer: MacroLayer, h: int, w: int) -> tuple[int, int]:
    """``(Ho, Wo)`` of the layer's convolution on an ``h × w`` input (``windows.window_out``)."""
    (kh, kw), (dh, dw) = layer.kernel, layer.dilations
    return window_out((h, w), ((kh - 1) * dh + 1, (kw - 1) * dw + 1), layer.strides, layer.pads)


def _columns(v: np.ndarray | float, cout: int, groups: int) -> np.ndarray:
    """A per-layer or per-channel value as float32 ``(G, Cout_g)``: channel ``o = g·Cout_g + j``."""
    return np.ascontiguousarray(np.broadcast_to(np.ravel(np.asarray(v, dtype=np.float32)), (cout,))
                                .reshape(groups, cout // groups))


def convert_and_add(layer: MacroLayer, parts: list[np.ndarray], work: Workspace, *,
                    in_place: bool = False, total: np.ndarray | None = None, relu: bool = False) -> np.ndarray:
    """The pixel-major output ``y`` ``(M, Cout)`` (a new array) of the pixel-major partial
    sums of every segment part ``(S_k, G, M, Cout_g)`` (int32 or float32, ``bitline_sums``; an
    unsliced layer): ADC codes ``p̂ = clip(rint(p / S_ADC[o]), ±(2^(b−1) − 1))`` in float32 (an
    int32 sum converts exactly: ``|p| < 2^24``), the adder tree ``P = Σ_s p̂`` and ``y = P ·
    scale + b'`` (``kernels.convert_rows``, ``kernels.affine_rows``: one pass over the sums),
    done on blocks of pixels of about ``BLOCK_BYTES`` of partial sums so that a block's ``P``
    stays in the cache from its first part to its output. ``y`` is computed ``(G, M,
    Cout_g)``: the output itself for one conv group, else scratch of ``work``'s ``output``
    copied to ``(M, G, Cout_g)``. With ``in_place`` (float32 parts) the codes overwrite the
    parts (a recording run's trace); ``total`` ``(G, M, Cout_g)``, if given, receives ``P`` (and
    ``y`` is computed from it at the end), else ``P`` is summed in ``y`` itself; ``relu`` gives
    ``max(y, 0)`` instead (``fused_relus``)."""
    first, *_ = parts
    groups, m, width = first.shape[1:]
    step, scale, bias = (_columns(v, layer.cout, groups) for v in (layer.adc_step, layer.scale, layer.bias))
    lo, hi = (np.float32(v) for v in numerics.code_range(layer.adc_bits, True))
    block = max(1, BLOCK_BYTES // (4 * groups * width * sum(p.shape[0] for p in parts)))
    y = np.empty((1, m, width), np.float32) if groups == 1 else work.array("output", (groups, m, width))
    tree = y if total is None else total
    for start in range(0, m, block):
        count = min(block, m - start)
        for k, p in enumerate(parts):
            kernels.convert_rows(p, start, count, step, lo, hi, tree, k == 0, in_place)
        if total is None:
            kernels.affine_rows(y, start, count, scale, bias, relu)
    if total is not None:
        np.copyto(y, total)
        kernels.affine_rows(y, 0, m, scale, bias, relu)
    return y.reshape(m, width) if groups == 1 else np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(m, layer.cout)


def run_layer(layer: MacroLayer, gemm: BitlineProduct, x: np.ndarray, record: bool = True) -> LayerTrace:
    """One CIM layer on float input ``x`` (module doc), computed pixel-major. The outputs are a
    view of the pixel-major ``(Ho, Wo, N, Cout)`` array with the shape ``(N, Cout, Ho, Wo)``
    (the next layer's ``patches`` wants that memory order); the trace's sums ``(N, Cout, Ho,
    Wo)`` and ADC codes ``(N, Seg, Cout, Ho, Wo)`` are transposed to their layout once when
    ``record``, else the sums are a view too and the ADC codes are left out (zero
    conversions). Every array is new."""
    a = _conv_input(layer, x)
    codes = numerics.quantize(a, layer.a_step, layer.a_bits, layer.a_signed)
    if layer.sliced:
        adc, total = _sliced_conversions(layer, gemm, codes, record)
        y = numerics.layer_output(total, layer.scale, layer.bias, out=None if record else total)
    else:
        n, _, h, w = a.shape
        ho, wo = _spatial(layer, h, w)
        p = [np.asarray(part, dtype=np.float32) for part in bitline_sums(layer, gemm, codes, Workspace())]
        groups, m, width = p[0].shape[1:]
        pm_total = np.empty((groups, m, width), dtype=np.float32)
        pm_y = convert_and_add(layer, p, Workspace(), in_place=True, total=pm_total)
        y = pm_y.reshape(ho, wo, n, layer.cout).transpose(2, 3, 0, 1)
        total = pm_total.transpose(1, 0, 2).reshape(ho, wo, n, layer.cout).transpose(2, 3, 0, 1)
        if record:
            total = np.ascontiguousarray(total)
            adc = segment_order(layer, channel_major(p, (ho, wo), n)).transpose(4, 0, 1, 2, 3)
    if not record:  # zero conversions recorded, in the trace's layout
        adc = np.empty((codes.shape[0], 0, *total.shape[1:]), dtype=np.float32)
    if layer.kind == "conv":
        return LayerTrace(codes, adc, total, y)
    lead = x.shape[:-1]
    return LayerTrace(codes.reshape(x.shape), adc.reshape(codes.shape[0], adc.shape[1], layer.cout),
                      total.reshape(*lead, layer.cout), y.reshape(*lead, layer.cout))


def layer_outputs(layer: MacroLayer, gemm: BitlineProduct, x: np.ndarray, work: Workspace,
                  relu: bool = False) -> np.ndarray:
    """``run_layer(…).outputs`` alone (the same bits), or with ``relu`` those of a Relu after
    it: the DAC codes (converted straight into their laid-out rows, ``patches``), the im2col
    rows (and a grouped layer's output before its reordering) are scratch of ``work``, and the
    output ``(N, Cout, Ho, Wo)`` a view of a new pixel-major ``(Ho, Wo, N, Cout)`` array
    (``convert_and_add``)."""
    if layer.sliced:
        y = run_layer(layer, gemm, x, record=False).outputs
        return IN_PLACE["Relu"]([y], y) if relu else y
    a = _conv_input(layer, x)
    n, _, h, w = a.shape
    p = products(gemm, patches(layer, a, work, (gemm.dtype, gemm.offset), layer_dac(layer)))
    ho, wo = _spatial(layer, h, w)
    out = convert_and_add(layer, p, work, relu=relu).reshape(ho, wo, n, layer.cout).transpose(2, 3, 0, 1)
    return out if layer.kind == "conv" else out.reshape(*x.shape[:-1], layer.cout)


def _conv_input(layer: MacroLayer, x: np.ndarray) -> np.ndarray:
    """``x`` as a convolution's ``(N, C, H, W)`` input (a fully connected layer's ``(…, C)`` as
    ``(…, C, 1, 1)``)."""
    return x if layer.kind == "conv" else x.reshape(-1, x.shape[-1], 1, 1)


def _sliced_conversions(layer: MacroLayer, gemm: BitlineProduct, codes: np.ndarray,
                        record: bool) -> tuple[np.ndarray, np.ndarray]:
    """ADC codes (in trace order when ``record``) and shift-added sums ``P`` of a sliced layer,
    computed on the bitline sums in the order ``(T, N, Ho, Wo, Seg, Cout, S)``."""
    cycles = dac_cycles(codes, layer.a_slices, layer.dac_bits)
    _, _, h, w = cycles.shape
    spatial = _spatial(layer, h, w)
    p = segment_order(layer, channel_major(bitline_sums(layer, gemm, cycles), spatial, cycles.shape[0]))
    seg, _, ho, wo, _ = p.shape  # (Seg, Cout·S, Ho, Wo, T·N)
    p = p.reshape(seg, layer.cout, layer.w_slices, ho, wo, layer.a_slices, codes.shape[0])
    p = np.ascontiguousarray(p.transpose(5, 6, 3, 4, 0, 1, 2))
    steps = adc_steps(layer.adc_step, layer.adc_shift, p.shape)
    adc = numerics.quantize(p, steps, layer.adc_bits, True, out=p)
    total = shift_add(adc, layer.cell_bits, layer.dac_bits, layer.adc_shift).transpose(0, 3, 1, 2)
    return (conversion_order(adc) if record else adc), total
