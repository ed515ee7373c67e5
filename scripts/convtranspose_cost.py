"""Cost of a ConvTranspose on the macro, both lowerings (``cimc.ops.defs.conv_transpose``):
zero insertion (a) against sub-pixel (b), for UNet up-blocks and common decoder shapes.

    python3 scripts/convtranspose_cost.py            # markdown table (the paper macro, 4-bit, default pipeline)

Each case is one ConvTranspose (random weights, a bias) in an ONNX model, imported once per
lowering (the import's ``choose`` forced) and compiled with the default options; the figures
are the cost model's (``cimc.cost.model``) for the layer's Conv.
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cimc.api import CompileOptions, compile_graph
from cimc.cost.model import model_cost
from cimc.frontend import import_onnx
from cimc.ops.defs import conv_transpose

#: (label, C_in, C_out, H = W, kernel, stride, pads, output_padding)
CASES = (
    ("UNet up1 (224², width 1)", 1024, 512, 14, 2, 2, 0, 0),
    ("UNet up3 (224², width 1)", 256, 128, 56, 2, 2, 0, 0),
    ("decoder k3 s2 p1 op1", 64, 32, 28, 3, 2, 1, 1),
    ("DCGAN k4 s2 p1", 128, 64, 16, 4, 2, 1, 0),
)
FIELDS = ("params", "bitlines", "segments", "adc_conversions", "computing_cycles", "macros")


def model(cin: int, cout: int, size: int, k: int, s: int, p: int, op: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cin, cout, k, k)).astype(np.float32) * 0.05
    b = rng.standard_normal(cout).astype(np.float32) * 0.1
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", kernel_shape=[k, k], strides=[s, s],
                            pads=[p] * 4, output_padding=[op, op])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])
    graph = helper.make_graph([node], "up", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def cost(proto: onnx.ModelProto, lowering: str) -> dict[str, int]:
    with mock.patch.object(conv_transpose, "choose", lambda g: lowering):
        graph = import_onnx(proto)
    compiled, ctx = compile_graph(graph, CompileOptions(calib_size=2))
    layer = next(layer for layer in model_cost(compiled, ctx.macro).layers if layer.name == "up")
    return {f: int(getattr(layer, f)) for f in FIELDS}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print("| case | lowering | " + " | ".join(FIELDS) + " |")
    print("|---|---|" + "---|" * len(FIELDS))
    for label, *shape in CASES:
        proto = model(*shape)
        for lowering in ("zero_insertion", "sub_pixel"):
            row = cost(proto, lowering)
            print(f"| {label} | {lowering} | " + " | ".join(f"{row[f]:,}" for f in FIELDS) + " |", flush=True)


if __name__ == "__main__":
    main()
