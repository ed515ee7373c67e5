"""``graph.json``: every node in execution order (op, inputs, outputs, attributes, and for a CIM
layer its ``cim_layer`` index), the model's inputs and outputs, and the constants the digital
ops read from ``digital.safetensors``."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import ConfigDict, Field

from cimc.documents.base import Count, Document, JsonObject

GRAPH_FORMAT: Final = "cimc-graph"
VERSION: Final = 1


class TensorDoc(Document):
    """A graph input or output."""

    name: str
    """Tensor name."""
    shape: list[Count]
    """Its shape at the compiled batch."""


class NodeDoc(Document):
    """One node of the graph."""

    name: str
    """Node name."""
    op: str
    """ONNX op."""
    inputs: list[str]
    """Input tensors (a CIM layer lists only its data input)."""
    outputs: Annotated[list[str], Field(min_length=1)]
    """Output tensors."""
    attrs: JsonObject
    """Attributes: lists for tuples, ``{"float": "inf"}`` for non-finite numbers."""
    cim_layer: Count | None
    """Index of the CIM layer the node is (``null``: a digital op)."""


class GraphDoc(Document):
    """The execution graph of a quantized build."""

    model_config = ConfigDict(title="cimc execution graph")

    format: Literal["cimc-graph"]
    """Always ``cimc-graph``."""
    version: Literal[1]
    """Version of the format."""
    batch: Count
    """The compiled batch size (reshapes keep the batch free: ``-1``)."""
    inputs: list[TensorDoc]
    """Graph inputs."""
    outputs: Annotated[list[TensorDoc], Field(min_length=1)]
    """Graph outputs."""
    nodes: list[NodeDoc]
    """Every node, in execution order."""
    constants: dict[str, Annotated[str, Field(pattern="^const_[0-9]{4,}$")]]
    """Tensor name → key of its array in ``digital.safetensors``."""
