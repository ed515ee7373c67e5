"""Parsing an untrusted JSON value into its document model: a refused value is a
``BuildError`` (exit code 8) naming the file, the path inside it and what is wrong.

Parsing is strict, like the JSON Schema: no string or boolean passes for a number (an
integer does pass for a float)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from cimc.documents.base import Document
from cimc.errors import BuildError

D = TypeVar("D", bound=Document)

#: Names pydantic adds to an error's path for the member of a number union.
_UNION_MEMBERS = ("int", "float")


def parse(model: type[D], name: str, doc: Any) -> D:
    """``doc`` (the parsed JSON of build file ``name``) as ``model``, or ``BuildError``."""
    try:
        return model.model_validate(doc, strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "/".join(str(p) for p in error["loc"] if p not in _UNION_MEMBERS) or "(top level)"
        raise BuildError(f"{name} does not match its schema at {where}: {error['msg']}",
                         hint="recompile the build with this version of cimc") from exc
