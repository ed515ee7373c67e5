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

Scope ``streams`` (``--equalize-scope streams``) equalises more convs, in groups that share one
scale vector ``s``: every ``writer`` divides its output channel ``i`` by ``s_i``, every ``reader``
multiplies its input channel ``i`` by ``s_i``, with

    s_i = √(r1_i / r2_i),   r1_i = max over writers of max |W_w[i]|,   r2_i = max over readers of max |W_r[:, i]|

(a pair is the group of one writer and one reader). Two kinds of group besides the pairs:

* a residual stream: the tensors joined by ``Add``s (of two computed tensors of one shape) whose
  every producer is a constant Conv (a writer, read without activation: MobileNetV2's
  projection convs) or one of those Adds, and whose every other reader is a constant Conv
  reading it as its input (a reader). The Adds are linear, so each stream tensor's channel
  ``i`` arrives divided by ``s_i`` and every reader undoes it;
* the classifier: ``conv1 → [act] → pools → Flatten → Gemm/MatMul`` with constant weights, where
  the pools are GlobalAveragePool, GlobalMaxPool, AveragePool or MaxPool (per channel and
  positively homogeneous: ``pool(x / s_i) = pool(x) / s_i``) and Flatten (axis 1) of a tensor
  with one pixel, so that feature ``i`` is channel ``i``; the reader's input channel ``i`` is
  column ``i`` of its ``(Cout, K)`` weight (``B`` of a Gemm with ``transB = 1``, ``Bᵀ`` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

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
#: Per-channel, positively homogeneous ops between an activation and a classifier (scope ``streams``).
POOLS = ("GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool")
#: A pair's total scale stays within ``[MIN_SCALE, 1/MIN_SCALE]`` (no weight pushed towards
#: float32's subnormal range by a channel whose other range is almost 0).
MIN_SCALE = 2.0**-24


@dataclass(frozen=True)
class Pair:
    """``conv1 → [act] → conv2`` (``act`` is ``None`` when ``conv2`` reads ``conv1`` directly)."""

    conv1: str
    act: str | None
    conv2: str


@dataclass(frozen=True)
class Group:
    """Constant Convs ``writers`` whose output channel ``i`` is divided by ``s_i``, through
    ``act`` (one writer only), and constant Convs, Gemms or MatMuls ``readers`` whose input
    channel ``i`` is multiplied by ``s_i`` (module doc)."""

    writers: tuple[str, ...]
    act: str | None
    readers: tuple[str, ...]


@register
@dataclass(frozen=True)
class Equalize(GraphPass):
    name = "equalize"
    needs = ("fold-batchnorm",)
    sweeps: int = 100
    tolerance: float = 1e-6
    scope: str = "pairs"

    @classmethod
    def from_options(cls, options: Any) -> Equalize:
        return cls(scope=options.equalize_scope)

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        carried = [key for key in (QAT_KEY, QDQ_KEY) if key in graph.metadata]
        if carried:
            raise UsageError(f"--equalize would rescale weights whose quantization steps the model carries "
                             f"({carried[0]}: from cimc qat or a quantized model)",
                             hint="drop --equalize for this model, or equalize the float model before QAT")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        out = graph.copy()
        found = find_groups(out, self.scope)
        if not found:
            return PassResult(out, False)
        names = list(dict.fromkeys(n for g in found for n in (*g.writers, *g.readers)))
        weights = {name: weight_as_conv(out, out.node(name)) for name in names}
        groups = {name: int(out.node(name).attrs.get("group", 1)) for name in weights}
        biases = {name: _bias(out, out.node(name), w.shape[0]) for name, w in weights.items()}
        scales = equalize(found, weights, biases, groups, self.sweeps, self.tolerance)
        for name, w in weights.items():
            node = out.node(name)
            if node.op == "Conv":
                _set_conv(out, node, w, biases[name])
            else:
                _set_matrix(out, node, w)
        for g, s in zip(found, scales, strict=True):
            if g.act is not None and out.node(g.act).op == "Clip":
                _rescale_clip(out, out.node(g.act), s)
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


def find_groups(graph: Graph, scope: str) -> list[Group]:
    """The groups of ``scope`` (module doc): the pairs of ``find_pairs``; with ``streams`` also
    every classifier pair and every residual stream, writers in topological order."""
    found = [Group((p.conv1,), p.act, (p.conv2,)) for p in find_pairs(graph)]
    if scope == "pairs":
        return found
    taken = {n for g in found for n in g.writers}
    order = {n.name: i for i, n in enumerate(graph.topo_order())}
    for conv in graph.topo_order():
        if conv.name in taken or not _constant_conv(graph, conv):
            continue
        group = _classifier(graph, conv) or _stream(graph, conv.outputs[0])
        if group is not None:
            group = replace(group, writers=tuple(sorted(group.writers, key=order.__getitem__)),
                            readers=tuple(sorted(group.readers, key=order.__getitem__)))
            found.append(group)
            taken.update(group.writers)
    return found


def _classifier(graph: Graph, conv: Node) -> Group | None:
    """``conv → [act] → pools → Flatten → Gemm/MatMul`` (module doc), or ``None``."""
    act, tensor = None, conv.outputs[0]
    reader = _sole_reader(graph, tensor)
    if reader is not None and _channelwise_act(reader, tensor):
        act, tensor = reader, reader.outputs[0]
        reader = _sole_reader(graph, tensor)
    while reader is not None and reader.op in POOLS and list(reader.inputs) == [tensor]:
        tensor = reader.outputs[0]
        reader = _sole_reader(graph, tensor)
    shape = graph.shape(tensor)
    if reader is None or reader.op != "Flatten" or int(reader.attrs.get("axis", 1)) != 1 or len(shape) != 4 \
            or shape[2] * shape[3] != 1:
        return None
    fc = _sole_reader(graph, reader.outputs[0])
    if fc is None or not _constant_matrix(graph, fc) or fc.inputs[0] != reader.outputs[0] \
            or weight_as_conv(graph, fc).shape[1] != shape[1]:
        return None
    return Group((conv.name,), None if act is None else act.name, (fc.name,))


def _stream(graph: Graph, start: str) -> Group | None:
    """The residual stream through ``start`` (module doc), or ``None`` when it has no Add or
    some tensor of it is produced or read otherwise."""
    tensors: set[str] = set()
    adds, writers, readers = set(), set(), set()
    todo = [start]
    while todo:
        tensor = todo.pop()
        if tensor in tensors:
            continue
        if tensor in graph.outputs or tensor in graph.initializers:
            return None
        tensors.add(tensor)
        producer = graph.producer(tensor)
        if producer is not None and _joining_add(graph, producer):
            adds.add(producer.name)
            todo += list(producer.inputs)
        elif producer is not None and _constant_conv(graph, producer):
            writers.add(producer.name)
        else:
            return None
        for reader in graph.consumers(tensor):
            if _joining_add(graph, reader):
                adds.add(reader.name)
                todo += [*reader.inputs, *reader.outputs]
            elif _reads_channels(graph, reader, tensor):
                readers.add(reader.name)
            else:
                return None
    if not adds or not readers:
        return None
    return Group(tuple(writers), None, tuple(readers))


def _joining_add(graph: Graph, node: Node) -> bool:
    """An ``Add`` of two computed tensors of its output's shape (no broadcast, no constant)."""
    return node.op == "Add" and len(node.inputs) == 2 and not any(t in graph.initializers for t in node.inputs) \
        and all(graph.shape(t) == graph.shape(node.outputs[0]) for t in node.inputs)


def _reads_channels(graph: Graph, node: Node, tensor: str) -> bool:
    """A constant Conv reading ``tensor`` (once) as its input, with as many input channels."""
    return _constant_conv(graph, node) and node.inputs[0] == tensor and tensor not in node.inputs[1:] \
        and _in_channels(graph, node) == graph.shape(tensor)[1]


def _constant_matrix(graph: Graph, node: Node) -> bool:
    """A Gemm (``transA = 0``) or MatMul with a constant 2-D weight ``B``."""
    return (node.op == "MatMul" or (node.op == "Gemm" and not int(node.attrs.get("transA", 0)))) \
        and len(node.inputs) >= 2 and node.inputs[1] in graph.initializers \
        and graph.initializers[node.inputs[1]].ndim == 2


def weight_as_conv(graph: Graph, node: Node) -> np.ndarray:
    """A Conv's weight, or a Gemm/MatMul's ``B`` itself as ``(Cout, K, 1, 1)`` (``B`` with
    ``transB = 1``, ``Bᵀ`` otherwise), float64: the view ``_set_matrix`` writes back (a Gemm's
    ``alpha`` is not applied, unlike ``cim_layer.layer_weight``)."""
    w = graph.initializers[node.inputs[1]].astype(np.float64)
    if node.op == "Conv":
        return w
    mat = w if node.op == "Gemm" and int(node.attrs.get("transB", 0)) else w.T
    return np.ascontiguousarray(mat).reshape(*mat.shape, 1, 1)


def _set_matrix(graph: Graph, node: Node, w: np.ndarray) -> None:
    """Give Gemm/MatMul ``node`` the weight ``w (Cout, K, 1, 1)`` in its own layout (float32, a new
    initializer; its bias is its own)."""
    mat = w.reshape(w.shape[0], w.shape[1])
    b = mat if node.op == "Gemm" and int(node.attrs.get("transB", 0)) else mat.T
    name = graph.unique_name(node.inputs[1] + "_eq")
    graph.set_initializer(name, np.ascontiguousarray(b, dtype=np.float32))
    graph.set_inputs(node, (node.inputs[0], name, *node.inputs[2:]))


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


def equalize(found: list[Group], weights: dict[str, np.ndarray], biases: dict[str, np.ndarray],
             groups: dict[str, int], sweeps: int, tolerance: float) -> list[np.ndarray]:
    """Scale ``weights``/``biases`` (float64, in place) group after group until every ``s`` is
    within ``tolerance`` of 1 (module doc); returns each group's total ``s`` per channel."""
    totals = [np.ones(weights[g.writers[0]].shape[0]) for g in found]
    for _ in range(sweeps):
        worst = 0.0
        for g, total in zip(found, totals, strict=True):
            r1 = np.max([np.abs(weights[w]).reshape(weights[w].shape[0], -1).max(axis=1) for w in g.writers], axis=0)
            r2 = np.max([in_channel_ranges(weights[r], groups[r]) for r in g.readers], axis=0)
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1.0)), 1.0)
            s = np.clip(s, MIN_SCALE / total, 1.0 / (MIN_SCALE * total))  # totals stay in [2^−24, 2^24]
            for w in g.writers:
                weights[w] /= s.reshape(-1, 1, 1, 1)
                biases[w] /= s
            for r in g.readers:
                scale_in_channels(weights[r], groups[r], s)
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
