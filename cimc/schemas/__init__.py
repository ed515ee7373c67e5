"""JSON Schemas of every JSON file in a build directory (installed as ``cimc.schemas``).

The ``*.schema.json`` files are generated from the document models in ``cimc.documents``
by ``python -m cimc.schemas.generate``; edit the models, never the files
(``tests/test_schemas_generated.py`` fails when they differ)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> dict[str, Any]:
    """The schema for ``name`` (e.g. ``"manifest"`` → ``manifest.schema.json``)."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return dict(json.loads(text))
