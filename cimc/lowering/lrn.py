"""LRN as standard ONNX ops: every LRN of ``model.cim.onnx``, an even-size one of the float model.

onnxruntime's LRN refuses an even ``size`` (its kernel asserts ``size % 2 == 1``, though ONNX
allows any positive size), and for odd sizes computes in float32 (a running window sum, then
``pow``), which differs from the kernel (``cimc.ops.defs.lrn``, float64) in the last bit. So
``model.cim.onnx`` writes every LRN as the steps of the kernel, in float64 like it, which makes
it bit-exact with the kernel (the emulator)::

    Z   = Pad(CumSum(Cast(x · x, double), axis 1), one 0 before channel 0)
    win = Gather(Z, upper, axis 1) − Gather(Z, lower, axis 1)      (the clipped windows)
    y   = Cast(Cast(x, double) / Pow(bias + alpha/size · win, beta), float)

The float model (``float_model``) keeps onnxruntime's own LRN for odd sizes.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from cimc.frontend.onnx_export import ExportBuilder
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ops.defs.lrn import window_indices


def needs_lowering(node: Node) -> bool:
    """Whether onnxruntime would refuse ``node`` as an LRN (an even size): the float model's rule."""
    return node.op == "LRN" and int(node.attrs["size"]) % 2 == 0


def emit_lrn(b: ExportBuilder, node: Node, graph: Graph) -> None:
    """Append the ONNX nodes of ``node`` (an LRN) to ``b`` (module doc)."""
    a, x, channels = node.attrs, node.inputs[0], graph.shape(node.inputs[0])[1]
    rank = len(graph.shape(node.inputs[0]))
    upper, lower = window_indices(channels, int(a["size"]))
    pads = np.zeros(2 * rank, np.int64)
    pads[1] = 1  # one zero before channel 0: Z[0] = 0
    const = {"pads": pads, "axis": np.array(1, np.int64), "upper": upper, "lower": lower,
             "scale": np.array(a["alpha"] / a["size"], np.float64), "bias": np.array(a["bias"], np.float64),
             "beta": np.array(a["beta"], np.float64)}
    c = {k: b.constant(node, k, v) for k, v in const.items()}

    def op(kind: str, inputs: list[str], **attrs: int) -> str:
        out = b.fresh(f"{node.name}/{kind.lower()}")
        proto = helper.make_node(kind, inputs, [out], name=out)
        proto.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        b.nodes.append(proto)
        return out

    sq = op("Cast", [op("Mul", [x, x])], to=TensorProto.DOUBLE)
    prefix = op("Pad", [op("CumSum", [sq, c["axis"]]), c["pads"]])
    win = op("Sub", [op("Gather", [prefix, c["upper"]], axis=1), op("Gather", [prefix, c["lower"]], axis=1)])
    den = op("Pow", [op("Add", [c["bias"], op("Mul", [c["scale"], win])]), c["beta"]])
    y = op("Div", [op("Cast", [x], to=TensorProto.DOUBLE), den])
    b.nodes.append(helper.make_node("Cast", [y], [node.outputs[0]], name=b.fresh(f"{node.name}/out"),
                                    to=TensorProto.FLOAT))


