"""Small IR graphs built directly (no ONNX) for pass tests."""

from __future__ import annotations

import numpy as np

from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.tensor import TensorInfo


def conv_out(h: int, k: int, stride: int, pad: int, dil: int = 1) -> int:
    return (h + 2 * pad - dil * (k - 1) - 1) // stride + 1


def add_conv(g: Graph, x: str, cout: int, k: int, *, group: int = 1, stride: int = 1, pad: int = 0,
             bias: bool = False, rng: np.random.Generator, name: str) -> str:
    n, cin, h, w = g.shape(x)
    g.set_initializer(f"{name}.w", rng.standard_normal((cout, cin // group, k, k)).astype(np.float32))
    ins = [x, f"{name}.w"]
    if bias:
        g.set_initializer(f"{name}.b", rng.standard_normal(cout).astype(np.float32))
        ins.append(f"{name}.b")
    out = f"{name}.y"
    ho, wo = conv_out(h, k, stride, pad), conv_out(w, k, stride, pad)
    g.tensors[out] = TensorInfo(out, (n, cout, ho, wo))
    g.add_node(Node(name, "Conv", tuple(ins), (out,),
                    {"strides": (stride, stride), "pads": (pad,) * 4, "dilations": (1, 1), "group": group}))
    return out


def add_bn(g: Graph, x: str, rng: np.random.Generator, name: str) -> str:
    c = g.shape(x)[1]
    for part, arr in (("g", rng.uniform(0.5, 1.5, c)), ("b", rng.standard_normal(c)),
                      ("m", rng.standard_normal(c)), ("v", rng.uniform(0.5, 2.0, c))):
        g.set_initializer(f"{name}.{part}", arr.astype(np.float32))
    out = f"{name}.y"
    g.tensors[out] = TensorInfo(out, g.shape(x))
    g.add_node(Node(name, "BatchNormalization", (x, f"{name}.g", f"{name}.b", f"{name}.m", f"{name}.v"),
                    (out,), {"epsilon": 1e-5}))
    return out


def add_unary(g: Graph, op: str, x: str, name: str, **attrs: object) -> str:
    out = f"{name}.y"
    g.tensors[out] = TensorInfo(out, g.shape(x))
    g.add_node(Node(name, op, (x,), (out,), dict(attrs)))
    return out


def graph_with_input(shape: tuple[int, ...], name: str = "x") -> Graph:
    g = Graph("test")
    g.tensors[name] = TensorInfo(name, shape)
    g.inputs.append(name)
    return g


def conv_bn_relu(cin: int = 8, cout: int = 16, k: int = 3, h: int = 6, *, bias: bool = False,
                 group: int = 1, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    g = graph_with_input((2, cin, h, h))
    y = add_conv(g, "x", cout, k, group=group, pad=k // 2, bias=bias, rng=rng, name="conv")
    y = add_bn(g, y, rng, "bn")
    g.outputs.append(add_unary(g, "Relu", y, "relu"))
    return g
