"""equalize: cross-layer equalisation of consecutive Convs (--equalize; Nagel et al. 2019).

For a pair ``conv1 → [act] → conv2`` whose middle tensors nothing else reads, scaling output
channel ``i`` of ``conv1`` by ``1/s_i`` and input channel ``i`` of ``conv2`` by ``s_i`` (``s_i > 0``)
leaves the float function unchanged when the activation is positively homogeneous per channel:

    W1'[i] = W1[i] / s_i     b1'[i] = b1[i] / s_i     W2'[:, i] = s_i · W2[:, i]

(for a grouped ``conv2``, input channel ``i`` is column ``i mod Cin_g`` of the output channels of
its group; a depthwise ``conv2`` scales its own channel ``i``). With the channel ranges
``r1_i = max |W1[i]|`` and ``r2_i = max |W2[:, i]|``, the paper's

    s_i = (1 / r2_i) · √(r1_i · r2_i) = √(r1_i / r2_i)

makes both ranges ``√(r1_i · r2_i)``, which evens the per-channel weight ranges that one step per
layer (or per column) must cover; ``s_i = 1`` where a range is 0. Pairs share convs in a chain
(``conv2`` of one pair is ``conv1`` of the next), so the scales are applied pair after pair,
sweep after sweep, until no ``s_i`` differs from 1 by more than ``tolerance`` (at most
``sweeps`` sweeps; a pair's total scale is kept within ``2^±24``); the weights are scaled in
float64 and rounded once to float32. A model that carries quantization steps (QAT metadata, a
QDQ model's steps) is refused: rescaled weights would no longer fit them.

Activations: none (``conv1`` read only by ``conv2``), ``Relu`` and ``LeakyRelu`` (``f(c·x) = c·f(x)``
for ``c > 0``: exact). ``Clip(lo, hi)`` (ReLU6 is ``Clip(0, 6)``) is not homogeneous: its
bounds would have to become ``lo / s_i``, ``hi / s_i`` per channel, which a Clip cannot hold, so
it is wrapped as ``Mul(·, s) → Clip(lo, hi) → Mul(·, 1/s)`` with per-channel constants
(``Clip(lo, hi)(y) / s = Clip(lo, hi)(s · (y / s)) / s``): the Clip sees the float model's tensor,
its readers the equalized one, and the float function is unchanged up to float32 rounding of
the two products. These digital Muls by constants are positively homogeneous, so
scale-to-shift still folds a layer's remainder through them and the Clip. Other activations
(SiLU, Sigmoid…) end a pair. Bias absorption is not done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cimc.errors import UsageError
from cimc.frontend.quantizers import QDQ_KEY
from cimc.ir.annotations import QuantParams
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo
from cimc.passes.manager import GraphPass, PassContext, PassResult
from cimc.passes.registry import register
from cimc.quant import numerics
from cimc.quant.qat_metadata import KEY as QAT_KEY

HOMOGENEOUS = ("Relu", "LeakyRelu")
#: A pair's total scale stays within ``[MIN_SCALE, 1/MIN_SCALE]`` (no weight pushed towards
#: float32's subnormal range by a channel whose other range is almost 0).
MIN_SCALE = 2.0**-24


@dataclass(frozen=True)
class Pair:
    """``conv1 → [act] → conv2`` (``act`` is ``None`` when ``conv2`` reads ``conv1`` directly)."""

    conv1: str
    act: str | None
    conv2: str


@register
@dataclass(frozen=True)
class Equalize(GraphPass):
    name = "equalize"
    needs = ("fold-batchnorm",)
    sweeps: int = 100
    tolerance: float = 1e-6

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        carried = [key for key in (QAT_KEY, QDQ_KEY) if key in graph.metadata]
        if carried:
            raise UsageError(f"--equalize would rescale weights whose quantization steps the model carries "
                             f"({carried[0]}: from cimc qat or a quantized model)",
                             hint="drop --equalize for this model, or equalize the float model before QAT")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        pairs = find_pairs(out)
        if not pairs:
            return PassResult(out, False)
        weights = {name: out.initializers[out.node(name).inputs[1]].astype(np.float64)
                   for p in pairs for name in (p.conv1, p.conv2)}
        groups = {name: int(out.node(name).attrs.get("group", 1)) for name in weights}
        biases = {name: _bias(out, out.node(name), w.shape[0]) for name, w in weights.items()}
        scales = equalize(pairs, weights, biases, groups, self.sweeps, self.tolerance)
        for name, w in weights.items():
            _set_conv(out, out.node(name), w, biases[name])
        for p, s in zip(pairs, scales, strict=True):
            if p.act is not None and out.node(p.act).op == "Clip":
                _rescale_clip(out, out.node(p.act), s)
        out.remove_unused_initializers()
        return PassResult(out, True)


def find_pairs(graph: Graph) -> list[Pair]:
    """Every ``conv1 → [act] → conv2`` of the graph (module doc), in topological order."""
    pairs = []
    for conv1 in graph.topo_order():
        if not _constant_conv(graph, conv1):
            continue
        act, tensor = None, conv1.outputs[0]
        reader = _sole_reader(graph, tensor)
        if reader is not None and _channelwise_act(reader, tensor):
            act, tensor = reader, reader.outputs[0]
            reader = _sole_reader(graph, tensor)
        if reader is not None and _constant_conv(graph, reader) and reader.inputs[0] == tensor \
                and tensor not in reader.inputs[1:] and _in_channels(graph, reader) == graph.shape(tensor)[1]:
            pairs.append(Pair(conv1.name, None if act is None else act.name, reader.name))
    return pairs


def _constant_conv(graph: Graph, node: Node) -> bool:
    return node.op == "Conv" and all(t in graph.initializers for t in node.inputs[1:] if t) \
        and len(graph.shape(node.inputs[1])) == 4


def _in_channels(graph: Graph, conv: Node) -> int:
    return graph.shape(conv.inputs[1])[1] * int(conv.attrs.get("group", 1))


def _sole_reader(graph: Graph, tensor: str) -> Node | None:
    """The one node reading ``tensor`` (once), if ``tensor`` is no graph output."""
    readers = graph.consumers(tensor)
    if tensor in graph.outputs or len(readers) != 1 or list(readers[0].inputs).count(tensor) != 1:
        return None
    return readers[0]


def _channelwise_act(node: Node, tensor: str) -> bool:
    """Relu, LeakyRelu, or a Clip with constant bounds (its attrs), of ``tensor`` only."""
    return list(node.inputs) == [tensor] and (node.op in HOMOGENEOUS or node.op == "Clip")


def equalize(pairs: list[Pair], weights: dict[str, np.ndarray], biases: dict[str, np.ndarray],
             groups: dict[str, int], sweeps: int, tolerance: float) -> list[np.ndarray]:
    """Scale ``weights``/``biases`` (float64, in place) pair after pair until every ``s`` is within
    ``tolerance`` of 1 (module doc); returns each pair's total ``s`` per channel."""
    totals = [np.ones(weights[p.conv1].shape[0]) for p in pairs]
    for _ in range(sweeps):
        worst = 0.0
        for p, total in zip(pairs, totals, strict=True):
            w1, w2 = weights[p.conv1], weights[p.conv2]
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = in_channel_ranges(w2, groups[p.conv2])
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1.0)), 1.0)
            s = np.clip(s, MIN_SCALE / total, 1.0 / (MIN_SCALE * total))  # totals stay in [2^−24, 2^24]
            w1 /= s.reshape(-1, 1, 1, 1)
            biases[p.conv1] /= s
            scale_in_channels(w2, groups[p.conv2], s)
            total *= s
            worst = max(worst, float(np.abs(np.log(s)).max()))
        if worst <= tolerance:
            break
    return totals


def _grouped(w: np.ndarray, groups: int) -> np.ndarray:
    """``w (Cout, Cin_g, kh, kw)`` viewed as ``(groups, Cout/groups, Cin_g, kh, kw)``."""
    return w.reshape(groups, w.shape[0] // groups, *w.shape[1:])


def in_channel_ranges(w: np.ndarray, groups: int) -> np.ndarray:
    """``max |W[:, i]|`` per input channel ``i = g·Cin_g + c`` of a grouped conv's weight."""
    return np.abs(_grouped(w, groups)).max(axis=(1, 3, 4)).reshape(-1)


def scale_in_channels(w: np.ndarray, groups: int, s: np.ndarray) -> None:
    """Multiply input channel ``i`` of grouped weight ``w`` by ``s[i]`` (in place)."""
    _grouped(w, groups)[...] *= s.reshape(groups, 1, w.shape[1], 1, 1)


def _bias(graph: Graph, conv: Node, channels: int) -> np.ndarray:
    if len(conv.inputs) < 3 or not conv.inputs[2]:
        return np.zeros(channels)
    return graph.initializers[conv.inputs[2]].astype(np.float64).reshape(-1)


def _set_conv(graph: Graph, conv: Node, w: np.ndarray, b: np.ndarray) -> None:
    """Give ``conv`` new initializers ``w``, ``b`` (rounded once to float32; new names, so a weight
    shared with another node is never changed under it)."""
    w_name = graph.unique_name(conv.inputs[1] + "_eq")
    graph.set_initializer(w_name, w.astype(np.float32))
    b_name = graph.unique_name(conv.name + "_bias_eq")
    graph.set_initializer(b_name, b.astype(np.float32))
    graph.set_inputs(conv, (conv.inputs[0], w_name, b_name))


def _rescale_clip(graph: Graph, clip: Node, s: np.ndarray) -> None:
    """Wrap ``Clip(lo, hi)`` of a tensor whose channel ``i`` is now divided by ``s_i`` as
    ``Mul(·, s) → Clip(lo, hi) → Mul(·, 1/s)`` (module doc)."""
    x, y = clip.inputs[0], clip.outputs[0]
    shape, dtype = graph.shape(x), graph.tensors[x].dtype
    per_channel = (1, -1, *([1] * (len(shape) - 2)))
    graph.remove_node(clip.name)
    before, after = graph.unique_name(f"{y}_eq_in"), graph.unique_name(f"{y}_eq_clip")
    for name in (before, after):
        graph.tensors[name] = TensorInfo(name, shape, dtype)
    up, down = graph.unique_name(f"{clip.name}_eq_s"), graph.unique_name(f"{clip.name}_eq_inv_s")
    graph.set_initializer(up, s.astype(np.float32).reshape(per_channel))
    graph.set_initializer(down, (1.0 / s).astype(np.float32).reshape(per_channel))
    graph.add_node(Node(graph.unique_name(f"{clip.name}_eq_scale"), "Mul", (x, up), (before,)))
    graph.add_node(Node(clip.name, "Clip", (before,), (after,), dict(clip.attrs)))
    graph.add_node(Node(graph.unique_name(f"{clip.name}_eq_unscale"), "Mul", (after, down), (y,)))


# -- per-column shift remainders (quantize, with --equalize and per-column steps) -----------------
def fold_column_remainder(graph: Graph, node: Node, inputs: dict[str, np.ndarray], pending: set[str]) -> bool:
    """Make the per-column output scale ``s_j = S_W[j]·S_ADC[j]·S_A`` of quantized ``node`` a power
    of two ``2^−k_j`` (``k_j = numerics.shift_exponent(s_j)``) by the equalisation above with
    ``s = r``, ``r_j = s_j · 2^k_j``: ``W[j]``, ``b[j]`` and ``S_W[j]`` are divided by ``r_j`` (the
    same weight codes; the output is ``y_j / r_j``) and input channel ``j`` of the one Conv that
    reads ``node`` through Relu, LeakyRelu, a Clip or equalize's ``Mul → Clip → Mul`` is
    multiplied by ``r_j`` — before that reader is calibrated (``pending``), whose calibration
    input ``inputs[reader]`` is divided by ``r_j`` accordingly. scale-to-shift then has no
    remainder to move into the ADC step. Returns whether it folded."""
    q = node.ann[QuantParams]
    path = _reader_path(graph, node)
    if path is None or q.w_step.size == 1 or path[-1].name not in pending or node.op != "Conv":
        return False
    exact = numerics.output_scale(q.w_step, q.adc_step, q.a_step).astype(np.float64)
    r = exact / numerics.shift_scale(numerics.shift_exponent(exact)).astype(np.float64)
    reader, between = path[-1], path[:-1]
    w, b = graph.initializers[node.inputs[1]].astype(np.float64), _bias(graph, node, r.size)
    _set_conv(graph, node, w / r.reshape(-1, 1, 1, 1), b / r)
    w_step = (q.w_step.astype(np.float64) / r).astype(np.float32)
    w_step.flags.writeable = False
    node.ann.put(replace(q, w_step=w_step))
    w2 = graph.initializers[reader.inputs[1]].astype(np.float64)
    scale_in_channels(w2, int(reader.attrs.get("group", 1)), r)
    _set_conv(graph, reader, w2, _bias(graph, reader, w2.shape[0]))
    _rescale_path(graph, between, r)
    inputs[reader.name] = (inputs[reader.name] / r.reshape(1, -1, 1, 1)).astype(np.float32)
    return True


def _reader_path(graph: Graph, node: Node) -> list[Node] | None:
    """The nodes from ``node``'s output to the one Conv reading it through channelwise ops
    (Relu, LeakyRelu, Clip, Mul by a constant), that Conv last; ``None`` when there is none."""
    path: list[Node] = []
    tensor = node.outputs[0]
    for _ in range(4):
        reader = _sole_reader(graph, tensor)
        if reader is None:
            return None
        if reader.op == "Conv":
            ok = _constant_conv(graph, reader) and reader.inputs[0] == tensor and tensor not in reader.inputs[1:]
            return [*path, reader] if ok and _in_channels(graph, reader) == graph.shape(tensor)[1] else None
        if not (_channelwise_act(reader, tensor) or _constant_mul(graph, reader, tensor)):
            return None
        path.append(reader)
        tensor = reader.outputs[0]
    return None


def _constant_mul(graph: Graph, node: Node, tensor: str) -> bool:
    return node.op == "Mul" and len(node.inputs) == 2 and node.inputs[0] == tensor \
        and node.inputs[1] in graph.initializers and node.inputs[1] != tensor


def _rescale_path(graph: Graph, between: list[Node], r: np.ndarray) -> None:
    """Channel ``j`` now arrives divided by ``r_j``: a Clip right after a ``Mul`` by a constant
    (equalize's wrapping) gets ``r`` into that Mul and ``1/r`` into the Mul after it; any other
    Clip is wrapped (``_rescale_clip``). Relu, LeakyRelu and Muls elsewhere pass ``1/r`` on."""
    for i, node in enumerate(between):
        if node.op != "Clip":
            continue
        wrapped = 0 < i < len(between) - 1 and between[i - 1].op == "Mul" and between[i + 1].op == "Mul"
        if not wrapped:
            _rescale_clip(graph, node, r)
            continue
        for mul, factor in ((between[i - 1], r), (between[i + 1], 1.0 / r)):
            k = graph.initializers[mul.inputs[1]].astype(np.float64)  # scalar or per channel
            rank = len(graph.shape(mul.inputs[0]))
            per_channel = (k * factor.reshape(1, -1, *([1] * (rank - 2)))).astype(np.float32)
            name = graph.unique_name(f"{mul.inputs[1]}_fold")
            graph.set_initializer(name, per_channel)
            graph.set_inputs(mul, (mul.inputs[0], name))
