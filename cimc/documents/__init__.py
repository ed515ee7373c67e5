"""Typed models of the JSON files of a build directory, one module per file.

Writers build these objects and serialise them (``dumps``); readers may parse a file into
its model after checking it against the schema; the JSON Schemas in ``cimc.schemas`` are
generated from them (``python -m cimc.schemas.generate``). This package imports nothing of
cimc but ``cimc.errors``, so every layer of the compiler can use it.
"""

from __future__ import annotations

from cimc.documents.base import Document, dumps
from cimc.documents.graph import GraphDoc
from cimc.documents.layout import Layout
from cimc.documents.manifest import Manifest
from cimc.documents.quant import Quant
from cimc.documents.report import Report
from cimc.documents.schedule import Schedule

#: The model of every JSON build file, by file stem (``layout`` → ``layout.json``).
DOCUMENTS: dict[str, type[Document]] = {
    "manifest": Manifest, "layout": Layout, "schedule": Schedule, "report": Report, "quant": Quant,
    "graph": GraphDoc,
}

__all__ = ["DOCUMENTS", "Document", "GraphDoc", "Layout", "Manifest", "Quant", "Report", "Schedule", "dumps"]
