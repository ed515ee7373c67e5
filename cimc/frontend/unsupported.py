"""What the user can do about the ops cimc cannot import: one ``UnsupportedError`` that names
every such op, where it is (its first nodes and how many there are) and what to do.

The ops cimc takes are those of the op table (``cimc.ops.op_table``); for any other op the
hint comes from its family below (control flow, quantization, recurrent, post-processing …),
from its domain (onnxruntime's ``com.microsoft`` contrib ops, QONNX/FINN quantizers, other
custom domains), or else the generic one: cut the model before it, or rewrite it with the ops
the table lists. Example::

    unsupported op(s): Loop (node 'loop'), NonMaxSuppression (node 'nms', also 'nms_1'; 2 nodes)
    (hint: Loop: control flow … ; NonMaxSuppression: detection post-processing … ; …)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import onnx

from cimc.errors import UnsupportedError
from cimc.frontend.proto_graph import DEFAULT_DOMAINS
from cimc.ops import IDENTITY_OPS, op_table

#: Nodes named per op in the message (the details list up to ``MAX_LISTED``).
NAMED = 3
MAX_LISTED = 20
_CUT = "cut the model before it with onnx.utils.extract_model(path, out, inputs, outputs) and compile that part"


@dataclass(frozen=True)
class Family:
    """Ops that share one remedy."""

    what: str
    ops: frozenset[str]
    hint: str


FAMILIES = (
    Family("control flow", frozenset({"If", "Loop", "Scan"}),
           "export with static shapes so the exporter unrolls it (torch.onnx.export with dynamo=False traces "
           "the taken branch), or " + _CUT),
    Family("an integer-arithmetic quantized op", frozenset({"DynamicQuantizeLinear", "QLinearConv",
                                                             "QLinearMatMul", "ConvInteger", "MatMulInteger"}),
           "cimc imports QDQ models (QuantizeLinear/DequantizeLinear around float ops) and QONNX quantizers, not "
           "integer ops: quantize with onnxruntime's quantize_static(..., quant_format=QuantFormat.QDQ), or compile "
           "the float model (cimc quantizes it itself: --w-bits, --a-bits, --bits, 'cimc qat')"),
    Family("a recurrent layer", frozenset({"LSTM", "GRU", "RNN"}),
           "cimc maps convolutional networks; recurrent layers are out of scope: " + _CUT),
    Family("attention or a transformer block", frozenset({"Attention", "MultiHeadAttention", "Einsum",
                                                           "RotaryEmbedding"}),
           "cimc maps convolutional networks; attention is out of scope: " + _CUT),
    Family("detection post-processing", frozenset({"NonMaxSuppression", "TopK", "ArgMax", "ArgMin", "Hardmax",
                                                   "RoiAlign", "MaxRoiPool", "GatherElements", "ScatterND",
                                                   "ScatterElements"}),
           "compile the network up to its raw outputs (logits, boxes) and post-process them outside: " + _CUT),
    Family("a random or training-only op", frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike",
                                                      "RandomUniformLike", "Bernoulli", "Multinomial",
                                                      "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"}),
           "export the model for inference (model.eval(), no loss or sampling nodes)"),
    Family("shape arithmetic on a run-time tensor", frozenset({"Shape", "Size", "ConstantOfShape",
                                                               "Range", "NonZero"}),
           "cimc folds shape arithmetic only when its inputs are constant: give every input a static shape "
           "(--input-shape) or export without dynamic axes"),
    Family("a sequence, string or optional value", frozenset({"SequenceConstruct", "SequenceAt", "SequenceInsert",
                                                              "SplitToSequence", "ConcatFromSequence",
                                                              "StringNormalizer", "Optional",
                                                              "OptionalGetElement"}),
           "cimc compiles tensors only: export the model so that it returns tensors"),
)
_DOMAIN_HINTS = {
    "com.microsoft": "an onnxruntime contrib op, written by onnxruntime's graph optimizer: save the model "
                     "before optimizing it (or re-export it from the framework) so that it has standard ops",
    "qonnx.custom_op.general": "a QONNX op other than the quantizers cimc imports (Quant, IntQuant, BipolarQuant, "
                               "Trunc): compile the model before that transformation, or the float model",
}
_DOMAIN_HINTS["finn.custom_op.general"] = _DOMAIN_HINTS["qonnx.custom_op.general"]


def op_label(node: onnx.NodeProto) -> str:
    """``Op`` for the default domain, ``domain::Op`` otherwise."""
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def check_supported(graph: onnx.GraphProto, foldable: frozenset[str]) -> None:
    """Raise one ``UnsupportedError`` naming every op type that cannot be imported (nodes the
    constant folder may remove are left to it: what it cannot fold is reported after it)."""
    may_fold = _may_fold(graph, foldable)
    report(n for n in graph.node if not supported(n) and n.name not in may_fold)


def supported(node: onnx.NodeProto) -> bool:
    """Whether the op table (or the identities removed at import) has ``node``'s op."""
    return node.domain in DEFAULT_DOMAINS and (node.op_type in op_table() or node.op_type in IDENTITY_OPS)


def _may_fold(graph: onnx.GraphProto, foldable: frozenset[str]) -> set[str]:
    """Names of nodes the constant folder might remove (all inputs possibly constant)."""
    const = {t.name for t in graph.initializer}
    names: set[str] = set()
    for node in graph.node:
        shape_like = node.op_type in ("Shape", "Size")
        read = node.input[:1] if node.op_type == "CastLike" else node.input  # CastLike reads only its target's type
        inputs_const = all(not t or t in const for t in read)
        if node.domain in DEFAULT_DOMAINS and node.op_type in foldable and (shape_like or inputs_const):
            names.add(node.name)
            const.update(node.output)
    return names


def hint_for(node: onnx.NodeProto) -> str:
    """What to do about ``node``'s op (module doc)."""
    if node.domain not in DEFAULT_DOMAINS:
        return _DOMAIN_HINTS.get(node.domain, f"a custom op of domain '{node.domain}': export the model with "
                                              "standard ONNX ops only, or " + _CUT)
    family = next((f for f in FAMILIES if node.op_type in f.ops), None)
    if family is not None:
        return f"{family.what}: {family.hint}"
    return "cimc has no kernel for it: " + _CUT + ", or express it with the ops cimc takes"


def report(nodes: Iterable[onnx.NodeProto]) -> None:
    """Raise one ``UnsupportedError`` for ``nodes``, if any: per op its first nodes, its count
    and a hint (module doc); ``details``: ``ops`` (op → first node), ``nodes`` (op → up to
    ``MAX_LISTED`` node names), ``counts`` and ``hints``."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        found.setdefault(op_label(node), []).append(node)
    if not found:
        return
    ops = sorted(found)
    listed = ", ".join(f"{op} ({_where(found[op])})" for op in ops)
    hints: dict[str, list[str]] = {}
    for op in ops:
        hints.setdefault(hint_for(found[op][0]), []).append(op)
    hint = "; ".join(f"{', '.join(names)}: {text}" for text, names in hints.items())
    raise UnsupportedError(
        f"unsupported op(s): {listed}", hint=f"{hint}; the ops cimc takes: {', '.join(sorted(op_table()))}",
        details={"ops": {op: found[op][0].name for op in ops},
                 "nodes": {op: [n.name for n in found[op][:MAX_LISTED]] for op in ops},
                 "counts": {op: len(found[op]) for op in ops},
                 "hints": {op: hint_for(found[op][0]) for op in ops}})


def _where(nodes: list[onnx.NodeProto]) -> str:
    """``node 'a'`` or ``node 'a', also 'b', 'c' and 4 more; 7 nodes``."""
    first = f"node '{nodes[0].name}'"
    if len(nodes) == 1:
        return first
    also = ", ".join(f"'{n.name}'" for n in nodes[1:NAMED])
    more = f" and {len(nodes) - NAMED} more" if len(nodes) > NAMED else ""
    return f"{first}, also {also}{more}; {len(nodes)} nodes"
