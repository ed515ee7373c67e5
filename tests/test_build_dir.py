"""Build directories: every JSON file valid against its schema, hashes right, weights placed
exactly, atomic replacement and byte-identical rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from safetensors.numpy import load_file

from cimc import schemas
from cimc.api import compile_model
from cimc.build.directory import sha256
from cimc.errors import UsageError

JSON_FILES = ("manifest", "layout", "schedule", "report", "quant", "graph")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "tiny"
    compile_model("tiny_residual", out, map_fc=True)
    return out


@pytest.mark.parametrize("name", JSON_FILES)
def test_schema_valid(build: Path, name: str) -> None:
    doc = json.loads((build / f"{name}.json").read_text())
    jsonschema.validate(doc, schemas.load(name))


def test_manifest_hashes(build: Path) -> None:
    manifest = json.loads((build / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in build.iterdir()} - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert sha256((build / name).read_bytes()) == digest


def test_macro_cells_hold_each_weight_once(build: Path) -> None:
    """Rebuild every layer's cell-code matrix from the macro arrays and the layout alone."""
    from cimc.api import CompileOptions, compile_graph, load_source
    from cimc.mapping.select import cim_nodes
    from cimc.quant.cim_layer import code_matrix

    layout = json.loads((build / "layout.json").read_text())
    arrays = load_file(str(build / "weights.safetensors"))
    graph, _ = load_source("tiny_residual", CompileOptions(map_fc=True))
    graph, _ = compile_graph(graph, CompileOptions(map_fc=True))
    nodes = cim_nodes(graph)
    used = sum(int((np.asarray(m["layer"]) >= 0).sum()) for m in layout["macros"])
    assert used == sum(layer["columns"] for layer in layout["layers"])
    for node, entry in zip(nodes, layout["layers"], strict=True):
        expected = code_matrix(graph, node)
        assert np.abs(expected).max() > 0
        got = np.zeros_like(expected)
        for m in layout["macros"]:
            owner = np.asarray(m["layer"])
            for b in np.flatnonzero(owner == entry["index"]):
                seg = entry["segments"][m["segment"][b]]
                n = seg["row_stop"] - seg["row_start"]
                w0 = m["wordline_start"][b]
                cells = arrays[f"macro_{m['index']:04d}"][w0:w0 + n, b]
                got[m["out_channel"][b], seg["row_start"]:seg["row_stop"]] = cells
        np.testing.assert_array_equal(got, expected)
        assert arrays["macro_0000"].dtype == np.int8


def test_rebuild_is_byte_identical(build: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    compile_model("tiny_residual", again, map_fc=True)
    for path in build.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


def test_foreign_folder_not_overwritten_without_force(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not made by cimc"):
        compile_model("tiny_cnn", target)
    assert (target / "precious.txt").read_text() == "keep me"
    compile_model("tiny_cnn", target, force=True)
    assert not (target / "precious.txt").exists()
    compile_model("tiny_cnn", target)  # a cimc build may be replaced without --force
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cimc-")]
