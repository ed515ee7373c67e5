"""Generate ``cimc/schemas/*.schema.json`` from the document models (``cimc.documents``).

``python -m cimc.schemas.generate`` rewrites the files; ``--check`` writes nothing and exits 1
when a committed schema differs from the generated one (CI runs it through
``tests/test_schemas_generated.py``).

pydantic's JSON Schema is turned into a self-contained draft 2020-12 schema: ``$ref``s are
inlined (the documents are trees; a field's docstring wins over its model's), property
titles, defaults and OpenAPI's ``discriminator`` are dropped, descriptions become one line,
an ``int | float`` pair of equal bounds becomes one ``number``, a map with a key pattern gets
``propertyNames`` (no other keys), and the root gets ``$id`` ``cimc/<name>.schema.json`` and
``$schema``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cimc.documents import DOCUMENTS, Document, dumps

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FOLDER = Path(__file__).resolve().parent
DROPPED = ("title", "default", "discriminator")


def schema(name: str, model: type[Document]) -> dict[str, Any]:
    """The schema of build file ``name.json`` described by ``model`` (module doc)."""
    raw = model.model_json_schema(mode="validation")
    defs = raw.pop("$defs", {})
    title = raw.get("title")
    out = _clean(_inline(raw, defs))
    return {"$id": f"cimc/{name}.schema.json", "$schema": DRAFT, **out, "title": title}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/X", ...}`` replaced by ``X`` (its own keys win)."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        rest = {k: v for k, v in node.items() if k != "$ref"}
        target = defs[node["$ref"].removeprefix("#/$defs/")]
        return _inline({**target, **rest}, defs)
    return {k: _inline(v, defs) for k, v in node.items()}


def _clean(node: Any) -> Any:
    """Drop ``DROPPED`` keywords and merge integer/number pairs, recursively (property names
    are never taken for keywords)."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED:
            continue
        if key in ("properties", "$defs", "patternProperties"):
            out[key] = {name: _clean(sub) for name, sub in value.items()}
        elif key == "description":
            out[key] = " ".join(value.split())  # a docstring's line breaks are not meaningful
        else:
            out[key] = _clean(value)
    if "anyOf" in out:
        out = _merge_numbers(out)
    if "patternProperties" in out:
        out = _key_pattern(out)
    return out


def _key_pattern(node: dict[str, Any]) -> dict[str, Any]:
    """A map with constrained keys (``dict[Pattern, V]``) as ``propertyNames`` plus
    ``additionalProperties``: pydantic's ``patternProperties`` would let other keys through."""
    ((pattern, values),) = node["patternProperties"].items()
    rest = {k: v for k, v in node.items() if k != "patternProperties"}
    return {**rest, "propertyNames": {"pattern": pattern}, "additionalProperties": values}


def _merge_numbers(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [{integer, C}, {number, C}, …]`` → ``anyOf: [{number, C}, …]`` (integers are
    numbers); a single remaining branch replaces the ``anyOf``."""
    branches = node["anyOf"]
    numbers = [{**b, "type": "integer"} for b in branches if b.get("type") == "number"]
    kept = [b for b in branches if not (b.get("type") == "integer" and b in numbers)]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


def generated() -> dict[str, bytes]:
    """The bytes of every schema file, by file name."""
    return {f"{name}.schema.json": dumps(schema(name, model)) for name, model in DOCUMENTS.items()}


def stale(folder: Path = FOLDER) -> list[str]:
    """The schema files in ``folder`` that differ from the generated ones (or are missing)."""
    files = generated()
    return [name for name, data in files.items()
            if not (folder / name).is_file() or (folder / name).read_bytes() != data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cimc.schemas.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a schema is stale")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"{name} differs from the generated schema: run python -m cimc.schemas.generate")
        return 1 if bad else 0
    for name, data in generated().items():
        (FOLDER / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
