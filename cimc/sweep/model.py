"""The swept model as bytes: resolved once by the driver, shipped once to each worker.

The driver exports a zoo model (or reads an ONNX file) into a ``ModelBlob``: the ONNX bytes
and the identity that enters every point's key (kind, name, sha256 of the bytes). A pool
worker receives it in its initializer, a Ray task as one object-store reference; each process
imports it once (``imported``) and reuses the graph for all its points (passes never mutate a
graph: they return new ones). The driver imports it first (``plan_from_config``), so a file
that is not a model the importer accepts fails the sweep with its typed error before any point
runs. Models with external data files must be self-contained first.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.limits import MODEL_BYTES
from cimc.untrusted import read_regular

_GRAPHS: dict[str, Graph] = {}


@dataclass(frozen=True)
class ModelBlob:
    kind: str  # "zoo" or "onnx"
    name: str
    sha256: str
    data: bytes

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "sha256": self.sha256}


def resolve_model(model: str, max_bytes: int = MODEL_BYTES) -> ModelBlob:
    """A zoo model's exported ONNX, or the bytes of an ONNX file."""
    import cimc.models as models

    if model in models.available():
        with tempfile.TemporaryDirectory(prefix="cimc-sweep-") as tmp:
            path = Path(tmp) / "model.onnx"
            models.export_onnx(model, path)
            data = path.read_bytes()
        return ModelBlob("zoo", model, hashlib.sha256(data).hexdigest(), data)
    path = Path(model)
    if not os.path.lexists(path):
        raise UsageError(f"model {path.name} does not exist")
    data = read_regular(path, limit=max_bytes, what=f"model {path.name}")
    return ModelBlob("onnx", path.name, hashlib.sha256(data).hexdigest(), data)


def imported(blob: ModelBlob) -> Graph:
    """The blob's IR graph, imported once per process."""
    graph = _GRAPHS.get(blob.sha256)
    if graph is None:
        from cimc.frontend import import_onnx
        from cimc.frontend.loader import parse_model

        graph = import_onnx(parse_model(blob.data))  # malformed bytes: InvalidModelError
        if blob.kind == "zoo":
            graph.name = blob.name  # as ``load_source`` names it
        _GRAPHS[blob.sha256] = graph
    return graph
