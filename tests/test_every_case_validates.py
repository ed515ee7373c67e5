"""Every one-op model of the interpreter's cases (``tests.test_interpreter.CASES``) compiles
(``map_fc``) to a build that ``cimc validate`` accepts — the emulator equal to onnxruntime on
``model.cim.onnx`` bit for bit on every tensor of the probe batches — or is refused with a typed
``CimcError`` of one line. Never a traceback, never a build that validate refuses.

Also a regression this sweep found: the graph check reads Where's constant condition, which
ONNX writes before the two branches, as an operand of the ONNX form only (the others are in
``test_batch_inputs.py``, ``test_lrn_even.py`` and ``test_digital_exact.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cimc.api import CompileOptions, compile_graph
from cimc.backend.macro import build_files
from cimc.build.directory import write_build
from cimc.emulator.validate import validate_build
from cimc.errors import CimcError
from cimc.frontend import import_onnx
from tests.map_builds import read_json, rehash, write_json
from tests.test_interpreter import CASES

SOURCE = {"kind": "onnx", "name": "m.onnx", "sha256": "0" * 64}


def compile_case(case: str, folder: Path) -> Path:
    """Compile ``CASES[case]`` with ``map_fc`` and write its build to ``folder``."""
    options = CompileOptions(map_fc=True)
    graph, ctx = compile_graph(import_onnx(CASES[case]()), options)
    build = build_files(graph, ctx.macro, None, SOURCE, options.public())
    write_build(folder, build.files, build.manifest, force=True)
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
def test_case_compiles_to_a_valid_build_or_a_typed_error(case: str, tmp_path: Path) -> None:
    try:
        folder = compile_case(case, tmp_path / "build")
    except CimcError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
        return
    result = validate_build(folder)
    assert result.ok, [str(v) for v in result.violations]
    assert any("bit for bit" in note for note in result.notes)


def test_graph_check_still_sees_swapped_where_branches(tmp_path: Path) -> None:
    """The Where whose condition ONNX reads first validates; swapping its branches in
    ``graph.json`` (manifest re-hashed) is still a ``graph`` violation."""
    folder = compile_case("where_constant_condition", tmp_path / "build")
    assert validate_build(folder).ok
    doc = read_json(folder, "graph.json")
    node = next(n for n in doc["nodes"] if n["op"] == "Where")
    node["inputs"] = node["inputs"][::-1]
    write_json(folder, "graph.json", doc)
    rehash(folder)
    violations = [v for v in validate_build(folder).violations if v.check == "graph"]
    assert violations and "reads" in str(violations[0])
