"""Generate ``cimc/schemas/*.schema.json`` from the document models (``cimc.documents``).

``python -m cimc.schemas.generate`` rewrites the files; ``--check`` writes nothing and exits 1
when a committed schema differs from the generated one (CI runs it through
``tests/test_schemas_generated.py``).

pydantic's JSON Schema is turned into a self-contained draft 2020-12 schema: ``$ref``s are
inlined (the documents are trees; a field's docstring wins over its model's), property
titles, defaults and OpenAPI's ``discriminator`` are dropped, descriptions become one line,
an ``int | float`` pair of equal bounds becomes one ``number``, a map with a key pattern gets
``propertyNames`` (no other keys), and the root gets ``$id`` ``cimc/<name>.schema.json`` and
``$schema``. Field descriptions are the fields' docstrings, read here from the models' source
(pydantic's ``use_attribute_docstrings`` would parse every model's source at each import).
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import itertools
import sys
import textwrap
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
    for node, cls in [(raw, model), *((d, _models()[key]) for key, d in defs.items() if key in _models())]:
        _describe(node, cls)
    title = raw.get("title")
    out = _clean(_inline(raw, defs))
    return {"$id": f"cimc/{name}.schema.json", "$schema": DRAFT, **out, "title": title}


@functools.cache
def _models() -> dict[str, type[Document]]:
    """Every document model class by name (pydantic's ``$defs`` keys)."""
    found: dict[str, type[Document]] = {}
    todo: list[type[Document]] = [Document]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            found[sub.__name__] = sub
            todo.append(sub)
    return found


def _describe(node: dict[str, Any], cls: type[Document]) -> None:
    """Give each property of ``node`` (the schema of ``cls``) its field's docstring."""
    for klass in reversed(cls.__mro__):
        if isinstance(klass, type) and issubclass(klass, Document):
            for field, text in field_docstrings(klass).items():
                if field in node.get("properties", {}):
                    node["properties"][field]["description"] = text


def field_docstrings(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for each ``name: T`` of ``cls``'s body followed by a string."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    return {a.target.id: inspect.cleandoc(b.value.value) for a, b in itertools.pairwise(body)
            if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
            and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)}


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
