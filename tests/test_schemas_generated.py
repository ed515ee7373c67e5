"""The committed JSON Schemas are the ones generated from the document models, and the models
write what the schemas accept."""

from __future__ import annotations

import json

import jsonschema
import pytest

import cimc.schemas as schemas
from cimc.documents import DOCUMENTS, dumps
from cimc.schemas.generate import generated, stale


def test_committed_schemas_are_generated() -> None:
    assert stale() == [], "run python -m cimc.schemas.generate and commit cimc/schemas/"


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_schema_is_valid_and_keeps_its_id(name: str) -> None:
    schema = json.loads(generated()[f"{name}.schema.json"])
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"cimc/{name}.schema.json" and schema["title"].startswith("cimc ")
    assert schema["additionalProperties"] is False  # the top level refuses unknown keys
    assert "$ref" not in json.dumps(schema)  # self-contained


def _descriptions_missing(node: object, path: str = "") -> list[str]:
    """Properties of ``node`` (a schema) without a description."""
    if isinstance(node, list):
        return [m for i, item in enumerate(node) for m in _descriptions_missing(item, f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    missing = [f"{path}.{k}" for k, v in node.get("properties", {}).items() if "description" not in v]
    return missing + [m for k, v in node.items() for m in _descriptions_missing(v, f"{path}/{k}")]


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_field_is_described(name: str) -> None:
    assert _descriptions_missing(schemas.load(name)) == []


#: The files written on one line (the others are indented).
COMPACT = ("layout", "quant", "graph")


def test_compiled_build_matches_schemas_and_round_trips(tmp_path) -> None:
    from cimc.api import compile_model

    compile_model("tiny_cnn", tmp_path / "b", w_bits=8)
    for name, model in DOCUMENTS.items():
        data = (tmp_path / "b" / f"{name}.json").read_bytes()
        doc, compact = json.loads(data), name in COMPACT
        jsonschema.validate(doc, schemas.load(name))
        assert dumps(model.model_validate(doc), compact=compact) == data  # parse + write gives the bytes back


def test_an_absent_key_stays_absent_and_null_stays_null() -> None:
    from cimc.documents.report import QuantRow

    row = {"name": "c", "source": "qat", "w_bits": 4, "a_bits": 4, "adc_bits": 5, "a_signed": False,
           "a_step": 1, "w_step": {"min": 0.5, "max": 1.0}, "adc_step": {"min": 2, "max": 2}}
    assert QuantRow.model_validate(row).to_json() == row  # integers stay integers, no keys added
    shifted = {**row, "shift_k": [3], "scale_error": 0.0, "fold": "none", "sqnr_db": None}
    assert QuantRow.model_validate(shifted).to_json() == shifted
