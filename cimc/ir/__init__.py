"""The cimc graph IR: ``Graph``, ``Node``, ``TensorInfo``, annotations, ``verify``, printer and
reference interpreter."""

from cimc.ir.annotations import Annotations, BitlinePlacement, CimLayer, WordlineTiling
from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ir.printer import format_graph
from cimc.ir.tensor import TensorInfo
from cimc.ir.verify import verify

__all__ = ["Annotations", "BitlinePlacement", "CimLayer", "Graph", "Node", "TensorInfo",
           "WordlineTiling", "format_graph", "verify"]
