"""``OpDef``: everything cimc knows about one IR op, one field per concern.

An op module (``cimc.ops.defs.<op>``) builds one ``OpDef`` per op; the concerns look the op
up in the table (``cimc.ops.op_table``) and call its field:

* ``canonicalize`` — the frontend (``cimc.frontend.canonical``): ONNX node → IR inputs and
  canonical attributes (defaults filled in, constant operands made attributes);
* ``shape`` — the output shape from the input shapes and attributes; ``cimc.ir.verify`` runs it
  to check that the inputs fit the op (a Conv's groups, a Concat's dims), the tests check it
  against the kernels;
* ``kernel`` — the numpy reference (``cimc.ir.interpreter``, ``cimc.quant.reference``);
* ``torch`` — the differentiable forward (``cimc.train.module``; torch is imported inside);
* ``channels`` — morph's channel coupling (``cimc.morph.channel_rules.ChannelBuilder``);
* ``rewrite`` — morph-channels' rewrite of the op's constants and attributes;
* ``export`` — ``cimc.frontend.onnx_export``: extra ONNX operands and the ONNX attributes;
* ``nonnegative`` — ``cimc.train.signs``: whether the output is ≥ 0 given the tensors known ≥ 0;
* ``homogeneous`` — ``cimc.passes.scale_to_shift``: whether ``f(c·x) = c·f(x)`` for ``c > 0``;
* ``mixes_batch`` — ``cimc.quant.batching``: whether the op combines values of different samples.

``replace`` (optional, not a concern) lets an op's ONNX node be imported as other IR ops: it
returns the equivalent ONNX nodes (a spatial ReduceMean is a GlobalAveragePool), or ``None`` to
import the node as itself.

``decompose`` (optional, not a concern) writes the op as other ONNX nodes where its own ONNX
node will not do: not in the export's opset 17 (Gelu, GroupNormalization), or without a float64
kernel in onnxruntime for ``model.cim.onnx`` (Erf, InstanceNormalization, Elu, …). It receives
the export builder, the node and ``wide`` (its tensors are float64: the ``double`` section of
``model.cim.onnx``) and returns ``False`` to be written as itself after all.

``double`` marks the ops the quantized reference (and the compiled model) computes in float64
and rounds once to float32: the long reductions. ``promotes`` marks a ``double`` op whose kernel
computes in the wider dtype of its operands itself (numpy's promotion, an exact cast): the
reference hands its weights over as float32, and the kernel casts them a block at a time, rather
than making a float64 copy of a 400 MB weight.

A concern an op cannot support is set to ``Unsupported(reason)``: calling it raises
``UnsupportedError`` with the reason, and the table's completeness test accepts it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from cimc.errors import UnsupportedError

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from cimc.frontend.canonical import OpContext
    from cimc.frontend.onnx_export import ExportBuilder
    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder
    from cimc.morph.channels_pass import RewriteContext

Attrs = dict[str, Any]
Shape = tuple[int, ...]
Canonicalize = Callable[["onnx.NodeProto", "OpContext", Attrs], tuple[list[str], Attrs]]
ShapeRule = Callable[[list[Shape], Attrs], Shape]
Kernel = Callable[[list["np.ndarray"], Attrs], "np.ndarray"]
TorchForward = Callable[[list[Any], Attrs], Any]
ChannelRule = Callable[["ChannelBuilder", "Node"], None]
RewriteRule = Callable[["RewriteContext", "Node"], None]
ExportRule = Callable[["ExportBuilder", "Node"], tuple[list[str], Attrs]]
SignRule = Callable[["Node", AbstractSet[str]], bool]
NodeTest = Callable[["Node"], bool]
AttrsTest = Callable[[Mapping[str, Any]], bool]
Replace = Callable[["onnx.NodeProto", "OpContext"], "list[onnx.NodeProto] | None"]
Decompose = Callable[["ExportBuilder", "Node", bool], bool]

#: The concern fields of ``OpDef`` (each a callable or ``Unsupported``).
CONCERNS = ("canonicalize", "shape", "kernel", "torch", "channels", "rewrite", "export", "nonnegative",
            "homogeneous", "mixes_batch")


@dataclass(frozen=True)
class Unsupported:
    """A concern the op does not implement; calling it raises ``UnsupportedError(reason)``."""

    op: str
    concern: str
    reason: str

    def __call__(self, *args: Any) -> NoReturn:
        raise UnsupportedError(f"op {self.op}: {self.concern} is not supported ({self.reason})")


@dataclass(frozen=True)
class OpDef:
    """One IR op. ``inputs`` is the ``(min, max)`` count of non-empty inputs, ``attrs`` the
    canonical attributes every node must carry, ``weight_inputs`` the input indices that must
    be constants (weights, biases, BN statistics), ``double`` whether the quantized reference
    computes the op in float64 (``promotes``: its kernel casts float32 weights itself),
    ``elementwise`` whether output element ``i`` is a function of input elements ``i`` alone
    (after broadcasting; ``cimc.passes.scale_to_shift`` finds activations by it), ``outputs``
    its output count, ``replace`` an optional import of the ONNX node as other IR ops, ``decompose``
    an optional export as other ONNX nodes; the other fields are the concerns (module docstring)."""

    name: str
    inputs: tuple[int, int]
    attrs: tuple[str, ...]
    canonicalize: Canonicalize
    shape: ShapeRule
    kernel: Kernel
    torch: TorchForward
    channels: ChannelRule
    rewrite: RewriteRule
    export: ExportRule
    nonnegative: SignRule
    homogeneous: NodeTest
    mixes_batch: AttrsTest
    weight_inputs: tuple[int, ...] = ()
    double: bool = False
    promotes: bool = False
    elementwise: bool = False
    outputs: int = 1
    replace: Replace | None = None
    decompose: Decompose | None = None


def plain_inputs(node: onnx.NodeProto, ctx: OpContext, a: Attrs) -> tuple[list[str], Attrs]:
    """Canonical form of an op without attributes: its non-empty inputs."""
    return [t for t in node.input if t], {}


def same_shape(shapes: list[Shape], a: Attrs) -> Shape:
    """Output shape = shape of the first input."""
    return shapes[0]


def no_rewrite(c: RewriteContext, node: Node) -> None:
    """The op holds no per-channel constant or channel count: morph changes nothing in it."""


def export_attributes(b: ExportBuilder, node: Node) -> tuple[list[str], Attrs]:
    """ONNX form = canonical form: no extra operands, every attribute as is."""
    return [], dict(node.attrs)


def channel_identity(b: ChannelBuilder, node: Node) -> None:
    """Output channel c = input channel c."""
    b.identity(node)


def channel_opaque(b: ChannelBuilder, node: Node) -> None:
    """Channels that cannot be followed: every tensor of the node keeps its width."""
    b.opaque(node)


def attrs_except(node: Node, *operands: str) -> Attrs:
    """The node's attributes but those the exporter writes as ``operands``."""
    return {k: v for k, v in node.attrs.items() if k not in operands}


def never(*args: Any) -> bool:
    """A property the op does not have (not known ≥ 0, not homogeneous, does not mix the batch)."""
    return False


def always(*args: Any) -> bool:
    """A property the op always has (output ≥ 0, or homogeneous)."""
    return True


def sign_of_inputs(node: Node, known: AbstractSet[str]) -> bool:
    """The op only moves, selects, averages, adds or multiplies values: ≥ 0 when every input is."""
    return all(t in known for t in node.inputs if t)


def batch_axis(a: Mapping[str, Any]) -> bool:
    """The op works along ``axis``: it mixes samples when that is axis 0."""
    return bool(a["axis"] == 0)
