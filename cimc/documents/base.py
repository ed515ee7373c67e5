"""The base of every build document model, the number and JSON types the models share, and
the deterministic JSON bytes every build file is written as.

A document is a pydantic model: its fields, their types and constraints and their
docstrings (which become the schema's ``description``; the generator reads them from the source,
so importing the models never parses it) are the single source of the JSON Schemas in
``cimc.schemas`` (``cimc.schemas.generate``). A field with a default is optional:
it is written only when it was given (``model_fields_set``), so parsing and writing a file
gives back its bytes. A key that may be absent but never ``null`` is typed
``X | Absent = None``; a key always present that may be ``null`` is ``X | None`` without a
default.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.json_schema import SkipJsonSchema

#: A JSON object of free-form values (compile options, ONNX attributes).
JsonObject = dict[str, JsonValue]

#: 64 lowercase hex digits.
SHA256_PATTERN = "^[0-9a-f]{64}$"


# A JSON number is typed ``int | float`` (each member with the same bounds), so ``1`` stays ``1``
# and ``1.0`` stays ``1.0``: a document serialises to the bytes its writer meant. The schema
# generator merges the two members into one ``number``.

#: A probability or fraction in [0, 1].
Fraction = Annotated[int, Field(ge=0, le=1)] | Annotated[float, Field(ge=0, le=1)]
#: A quantization step or scale: a positive number.
Positive = Annotated[int, Field(gt=0)] | Annotated[float, Field(gt=0)]
#: A number that is never negative.
NonNegative = Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0)]
#: Any number.
Real = int | float
#: A decibel figure: a number, ``"inf"``/``"-inf"`` for non-finite values, or ``null`` (not measured).
Decibels = int | float | Literal["inf", "-inf"] | None

#: ``X | Absent = None``: a key that may be left out but is never ``null`` in the JSON.
Absent = SkipJsonSchema[None]

#: An integer ≥ 0 (an index, a count).
Count = Annotated[int, Field(ge=0)]
#: An integer ≥ 1 (a size, a number of slices).
Size = Annotated[int, Field(ge=1)]
#: A bit width of the quantizer, 1 … 16.
Bits = Annotated[int, Field(ge=1, le=16)]


class Document(BaseModel):
    """A JSON object of a build file: unknown keys are refused, field docstrings are the
    schema's descriptions (``cimc.schemas.generate``), an optional field is written only when given."""

    # defer_build: a model's validator and serializer are built when it is first used, not on
    # import (a compile uses 33 of the 37 models; importing them all took ~0.1 s CPU)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready object (dicts, lists, numbers, strings) of this document: every
        required field, and an optional one only when it was given (``exclude_unset``, at every
        depth; a required field is always given). The same dict as a per-model serializer that
        drops unset optional keys, in a third of its time (``layout.json`` of the 25.6 M-parameter
        benchmark model, ``benchmarks/results/compile_memory.md``)."""
        return self.model_dump(mode="python", exclude_unset=True)


def dumps(doc: Any, *, compact: bool = False) -> bytes:
    """Deterministic JSON bytes (sorted keys, fixed separators, trailing newline)."""
    if isinstance(doc, Document):
        doc = doc.to_json()
    if compact:
        return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()
