"""The ``--input-shape`` to suggest for a graph input whose dims are symbolic or unknown.

A fixed dim is kept; the batch dim (dim 0) becomes 1. Every other dim is taken from the
model itself where it tells: the channels of a Conv that reads the input (``W.shape[1] ·
group``), the features of a Gemm/MatMul that reads it (its weight's first dim, or second
with ``transB``), the ``sizes`` of a Resize that reads it, a dim name that is a number
(``"224"``). A dim the model does not tell is never guessed, least of all as 1 (a spatial
dim of 1 compiles into a different network): it stays a placeholder, the dim's own
``dim_param`` name or ``H``/``W`` for the last two dims of a 4-D input, and the hint says
that the user must give it::

    --input-shape x=1,3,H,W (H, W: give the size the model expects, e.g. its training image size)
"""

from __future__ import annotations

import re

import onnx
from onnx import numpy_helper

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


def suggest(graph: onnx.GraphProto, vi: onnx.ValueInfoProto) -> str:
    """``--input-shape NAME=…`` for input ``vi`` of ``graph``, with what the user must fill in."""
    known, reader_rank = _from_readers(graph, vi.name)
    tt = vi.type.tensor_type
    rank = len(tt.shape.dim) if tt.HasField("shape") else reader_rank or 4
    dims: list[str] = []
    for i in range(rank):
        dim = tt.shape.dim[i] if tt.HasField("shape") else None
        dims.append(_dim(dim, i, rank, known))
    missing = [d for d in dims if not d.isdigit()]
    text = f"--input-shape {vi.name}={','.join(dims)}"
    if not tt.HasField("shape"):
        text += f" (the model declares no shape for '{vi.name}'; rank {rank} assumed)"
    if missing:
        text += f" ({', '.join(dict.fromkeys(missing))}: give the size the model expects, e.g. its training image size)"
    return text


def _dim(dim: onnx.TensorShapeProto.Dimension | None, i: int, rank: int, known: dict[int, int]) -> str:
    if dim is not None and dim.HasField("dim_value"):
        return str(dim.dim_value)
    if i == 0:
        return "1"
    if i in known:
        return str(known[i])
    param = dim.dim_param if dim is not None and dim.HasField("dim_param") else ""
    if param.isdigit() and int(param) > 0:
        return param
    if _NAME.fullmatch(param):
        return param
    if rank == 4 and i >= 2:
        return "HW"[i - 2]
    return "C" if i == 1 else f"D{i}"


def _from_readers(graph: onnx.GraphProto, name: str) -> tuple[dict[int, int], int | None]:
    """Dims of input ``name`` that the nodes reading it fix (module doc), ``{axis: size}``, and
    the rank a Conv (its weight's) or a Gemm (2) that reads it implies."""
    inits = {t.name: t for t in graph.initializer}
    known: dict[int, int] = {}
    rank: int | None = None
    for node in graph.node:
        if not node.input or node.input[0] != name:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        shape = _init_shape(inits, node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "Conv" and shape is not None and len(shape) >= 3:
            known.setdefault(1, shape[1] * int(attrs.get("group", 1)))
            rank = rank or len(shape)
        elif node.op_type in ("Gemm", "MatMul") and shape is not None and len(shape) == 2:
            known.setdefault(1, shape[1] if node.op_type == "Gemm" and attrs.get("transB", 0) else shape[0])
            rank = rank or 2
        elif node.op_type == "Resize" and len(node.input) > 3 and node.input[3] in inits:
            sizes = numpy_helper.to_array(inits[node.input[3]]).reshape(-1).tolist()
            known.update({i: int(s) for i, s in enumerate(sizes) if i >= 2 and 0 < int(s) < 2**31})
    return known, rank


def _init_shape(inits: dict[str, onnx.TensorProto], name: str) -> tuple[int, ...] | None:
    return tuple(int(d) for d in inits[name].dims) if name in inits else None
