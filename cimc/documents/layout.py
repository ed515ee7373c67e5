"""``layout.json``: what every macro cell holds. Per layer its shape, conv geometry, tiling
into segments (with the input channel and kernel position of every wordline) and placement;
per macro, per bitline, the owning layer, segment, output channel, first wordline and
weight digit (``-1`` where idle)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from cimc.documents.base import Absent, Count, Document, Size
from cimc.documents.macro import MacroDoc

#: The one row order of a layer's unrolled weights.
ROW_ORDER = "r = c*kh*kw + i*kw + j within the output channel's group"

Pair = Annotated[list[Size], Field(min_length=2, max_length=2)]
Shape4 = Annotated[list[Size], Field(min_length=4, max_length=4)]
Owner = Annotated[int, Field(ge=-1)]
LayerOp = Literal["Conv", "Gemm", "MatMul"]
LayerKind = Literal["conv", "gemm"]
Tiling = Literal["channel", "dense"]
#: A torch module path (``features.1.conv.0``): names of letters, digits and ``_`` joined by ``.``.
MODULE_PATH = r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*"
#: The longest module path kept (a longer one is ignored on import, refused in ``layout.json``).
MAX_MODULE_PATH = 200
ModulePath = Annotated[str, Field(min_length=1, max_length=MAX_MODULE_PATH, pattern=rf"^{MODULE_PATH}$")]


class Geometry(Document):
    """How the layer slides over its input, from the IR node (ONNX ``Conv`` attributes). A fully
    connected layer (``Gemm``/``MatMul``) is a 1×1 conv whose pixels are the rows of its input
    after the batch axis: strides ``[1, 1]``, pads zeros, dilations ``[1, 1]``, group 1,
    ``in_shape [N, K, P, 1]`` and ``out_shape [N, M, P, 1]`` with ``P`` its ``out_pixels``
    (``[N, K, 1, 1]`` for a 2-D input). ``out_shape[2:]`` is
    ``(in + pad_begin + pad_end − dilation·(kernel − 1) − 1) // stride + 1`` per axis."""

    strides: Pair
    """``[stride_h, stride_w]``."""
    pads: Annotated[list[Count], Field(min_length=4, max_length=4)]
    """``[top, left, bottom, right]`` zero padding (ONNX order)."""
    dilations: Pair
    """``[dilation_h, dilation_w]``."""
    group: Size
    """Convolution groups (the layer's ``groups``; ``C``/``K`` divide by it)."""
    in_shape: Shape4
    """``[N, C, H, W]`` of the layer's input (N: the compiled batch)."""
    out_shape: Shape4
    """``[N, K, OH, OW]`` of the layer's output (``OH·OW`` is ``out_pixels``)."""


class Segment(Document):
    """A run of consecutive weight rows placed on one column of wordlines."""

    index: Count
    """Position of the segment in the layer (0 … S−1)."""
    row_start: Count
    """First weight row of the segment."""
    row_stop: Count
    """One past the last weight row."""
    wordline_channel: list[int]
    """Input channel (within the group) each wordline of the segment holds: ``r // (kh·kw)``."""
    wordline_kernel_pos: list[Annotated[list[int], Field(min_length=2, max_length=2)]]
    """Kernel position ``[i, j]`` each wordline of the segment holds."""


class Layer(Document):
    """One CIM layer: its shape, tiling and placement."""

    index: Count
    """Position of the layer in the layout (the owner lists' layer index)."""
    node: str
    """Name of the IR node."""
    module: ModulePath | Absent = None
    """Only where the model says it (torch's dynamo exporter, ``pkg.torch.onnx.name_scopes``): the
    torch module the layer comes from (``features.1.conv.0``), which views show instead of the node
    name (``node_conv2d_1``)."""
    op: LayerOp
    """ONNX op of the node."""
    kind: LayerKind
    """``conv``: a convolution; ``gemm``: a fully connected layer."""
    groups: Size
    """Convolution groups."""
    rows: Size
    """Weight rows per output channel: ``C/groups · kh · kw``."""
    cout: Size
    """Output channels."""
    kernel: Pair
    """``[kh, kw]``."""
    out_pixels: Size
    """Output positions per inference: ``OH·OW``."""
    tiling: Tiling
    """How rows were cut into segments: whole input channels, or densely."""
    first_column: Count
    """The layer's first column in the global bitline order."""
    columns: Size
    """Columns (bitlines) the layer uses: ``S · Cout · w_slices``."""
    w_slices: Size
    """Weight digit columns per (segment, output channel): ceil(w_bits / cell_bits)."""
    a_slices: Size
    """DAC cycles per input vector: ceil(a_bits / dac_bits)."""
    macros: list[int]
    """The macros the layer's columns sit on."""
    geometry: Geometry
    """Strides, pads, dilations, group and input/output shapes of the conv; a ``Gemm``/``MatMul``
    is a 1×1 conv (strides and dilations 1, no pads, group 1) on ``[N, K, P, 1]``, ``P`` its
    ``out_pixels``."""
    segments: Annotated[list[Segment], Field(min_length=1)]
    """The row segments of the layer, in order."""
    pool_vector_length: Size | Absent = None
    """Only on a layer compressed by a weight pool (``--weight-pool``; ``weight_pool.safetensors``):
    the pool's vector length ``L``. The tiling is then dense with ``L`` rows per segment, and
    segment ``s`` is vector position ``s``."""


class MacroOwners(Document):
    """Per bitline of one macro, what it holds (``-1`` on an idle bitline)."""

    index: Count
    """The macro's number (0, 1, …)."""
    layer: list[Owner]
    """Owning layer index of each bitline."""
    segment: list[Owner]
    """Segment of that layer."""
    out_channel: list[Owner]
    """Output channel of that layer."""
    wordline_start: list[Owner]
    """First wordline the column occupies."""
    slice: list[Owner]
    """weight digit index j of the column on each bitline (-1 idle, 0 unsliced); layer column k = (s*Cout + o)*S + j"""


class Layout(Document):
    """The weight layout of a build."""

    model_config = ConfigDict(title="cimc weight layout")

    macro: MacroDoc
    """The macro compiled for."""
    row_order: str
    """How a layer's weight rows are numbered (``ROW_ORDER``)."""
    layers: list[Layer]
    """The CIM layers, in execution order."""
    macros: list[MacroOwners]
    """One entry per macro, numbered 0, 1, …"""
