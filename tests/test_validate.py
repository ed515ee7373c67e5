"""``cimc validate``: clean builds pass; every tampering is caught by the hash check and,
with the manifest re-hashed, by the semantic check that owns it; all violations listed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cimc.build.cell_map import owners
from cimc.cli.main import main
from cimc.documents.layout import Layout
from cimc.emulator.validate import validate_build
from cimc.models import export_onnx
from tests.map_builds import build, copy_build, edit_weights, read_json, rehash, write_json

TINY = "tiny_cnn"


@pytest.mark.parametrize(("name", "options"), [
    ("tiny_cnn", {}), ("tiny_residual", {"map_fc": True}), ("digits_cnn", {"placement": "aligned"}),
    ("tiny_cnn", {"tiling": "dense", "macro": "small-64"})])
def test_fresh_builds_are_valid(name: str, options: dict[str, object]) -> None:
    result = validate_build(build(name, **options), reference=False)
    assert result.violations == []
    assert {"manifest", "sha256", "schemas", "layout", "placement", "weights", "schedule", "report"} <= set(
        result.checks)


def test_rebuild_compares_every_cell_of_a_zoo_build() -> None:
    result = validate_build(build(TINY), reference=True)
    assert result.ok, result.violations
    assert any("cell by cell" in note for note in result.notes)
    assert not any("cell by cell" in note for note in validate_build(build(TINY)).notes)


def _occupied_cell(folder: Path) -> tuple[int, int, int]:
    """(macro, wordline, bitline) of a cell holding a non-zero weight of layer 1."""
    own = owners(Layout.model_validate(read_json(folder, "layout.json")))
    m, b = np.argwhere(own.layer == 1)[3]
    return int(m), int(own.start[m, b]) + 2, int(b)


def flip_code(folder: Path) -> None:
    m, w, b = _occupied_cell(folder)

    def flip(a: np.ndarray) -> np.ndarray:
        a[w, b] = -a[w, b] + (1 if np.issubdtype(a.dtype, np.integer) else 0.5)
        return a

    edit_weights(folder, m, flip)


def _move(folder: Path, in_layout: bool, in_weights: bool) -> None:
    """Move the last used bitline of macro 0 to an idle bitline (tiny_cnn uses 80 of 256)."""
    layout = read_json(folder, "layout.json")
    owner = layout["macros"][0]
    src = max(i for i, layer in enumerate(owner["layer"]) if layer >= 0)
    dst = src + 50
    if in_layout:
        for key in ("layer", "segment", "out_channel", "wordline_start"):
            owner[key][dst], owner[key][src] = owner[key][src], -1
        write_json(folder, "layout.json", layout)
    if in_weights:
        def move(a: np.ndarray) -> np.ndarray:
            a[:, dst], a[:, src] = a[:, src], 0
            return a

        edit_weights(folder, 0, move)


def edit_report_md(folder: Path) -> None:
    text = (folder / "report.md").read_text()
    (folder / "report.md").write_text(text.replace("| 40 |", "| 41 |", 1))


def edit_report_json(folder: Path) -> None:
    doc = read_json(folder, "report.json")
    doc["layers"][1]["macro_usage"] *= 0.5
    write_json(folder, "report.json", doc)


def swap_steps(folder: Path) -> None:
    doc = read_json(folder, "schedule.json")
    steps = doc["steps"]
    steps[0], steps[1] = steps[1], steps[0]
    steps[0]["step"], steps[1]["step"] = 0, 1
    write_json(folder, "schedule.json", doc)


def duplicate_column(folder: Path) -> None:
    layout = read_json(folder, "layout.json")
    owner = layout["macros"][0]
    for key in ("layer", "segment", "out_channel", "wordline_start"):
        owner[key][200] = owner[key][10]
    write_json(folder, "layout.json", layout)


def tall_segment(folder: Path) -> None:
    """Claim that the 40-channel conv (360 rows) is one segment: over 256 wordlines."""
    layout = read_json(folder, "layout.json")
    layer = layout["layers"][2]
    first, last = layer["segments"][0], layer["segments"][-1]
    first.update(row_stop=last["row_stop"], wordline_channel=[r // 9 for r in range(360)],
                 wordline_kernel_pos=[[(r % 9) // 3, r % 3] for r in range(360)])
    layer["segments"] = [first]
    write_json(folder, "layout.json", layout)


def wide_bits(folder: Path) -> None:
    doc = read_json(folder, "quant.json")
    doc["layers"][1]["w_bits"] = 5
    doc["layers"][2]["adc_bits"] = 6
    write_json(folder, "quant.json", doc)


def relu_to_sigmoid(folder: Path) -> None:
    doc = read_json(folder, "graph.json")
    for node in doc["nodes"]:
        node["op"] = "Sigmoid" if node["op"] == "Relu" else node["op"]
    write_json(folder, "graph.json", doc)


def negate_constants(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    arrays = load_file(folder / "digital.safetensors")
    save_file({k: -v for k, v in arrays.items()}, folder / "digital.safetensors")


def shift_bias(folder: Path) -> None:
    doc = read_json(folder, "quant.json")
    doc["layers"][0]["bias"] = [b + 0.5 for b in doc["layers"][0]["bias"]]
    write_json(folder, "quant.json", doc)


def huge_input(folder: Path) -> None:
    """graph.json declares a 3 × 200,000² input: validate's probes would have allocated 894 GiB."""
    doc = read_json(folder, "graph.json")
    doc["inputs"][0]["shape"] = [1, 3, 200_000, 200_000]
    write_json(folder, "graph.json", doc)


def cast_output_to_double(folder: Path) -> None:
    """model.cim.onnx ends in a Cast to float64: every value is the same (float32 converts
    exactly), only the dtype of the model's output differs from the emulator's float32."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(folder / "model.cim.onnx"))
    output = model.graph.output[0]
    producer = next(n for n in model.graph.node if output.name in n.output)
    producer.output[list(producer.output).index(output.name)] = output.name + "_float32"
    model.graph.node.append(helper.make_node("Cast", [output.name + "_float32"], [output.name], to=TensorProto.DOUBLE))
    output.type.tensor_type.elem_type = TensorProto.DOUBLE
    onnx.save(model, str(folder / "model.cim.onnx"))


CASES: dict[str, tuple[Callable[[Path], None], set[str], bool]] = {
    # name: (tampering, checks that must report it with a re-hashed manifest, needs the reference)
    "flipped weight code": (flip_code, {"cells", "reference"}, True),
    "moved column (layout and weights)": (lambda f: _move(f, True, True), {"placement"}, False),
    "moved column (layout only)": (lambda f: _move(f, True, False), {"placement", "weights"}, False),
    "moved column (weights only)": (lambda f: _move(f, False, True), {"weights", "cells"}, False),
    "edited report.md": (edit_report_md, {"report"}, False),
    "edited report.json": (edit_report_json, {"report"}, False),
    "schedule out of order": (swap_steps, {"schedule"}, False),
    "column placed twice": (duplicate_column, {"layout", "cells"}, False),
    "bits over the macro's limits": (wide_bits, {"quant"}, False),
    "segment over the wordlines": (tall_segment, {"layout", "report"}, False),
    "every Relu a Sigmoid in graph.json": (relu_to_sigmoid, {"graph", "outputs"}, False),
    "digital constants negated": (negate_constants, {"graph", "outputs"}, False),
    "a CIM layer's bias shifted in quant.json": (shift_bias, {"outputs"}, False),
    "a huge input shape in graph.json": (huge_input, {"graph", "outputs"}, False),
    "model.cim.onnx's output cast to float64": (cast_output_to_double, {"outputs"}, False),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("rehashed", [False, True], ids=["raw", "rehashed"])
def test_tampering_is_caught(tmp_path: Path, case: str, rehashed: bool) -> None:
    tamper, owners_of_case, needs_reference = CASES[case]
    folder = copy_build(tmp_path / "b", TINY)
    tamper(folder)
    if rehashed:
        rehash(folder)
    result = validate_build(folder, reference=rehashed and needs_reference)  # raw: the hash alone must do
    found = {v.check for v in result.violations}
    assert ("sha256" in found) != rehashed, result.violations
    if rehashed:
        assert owners_of_case <= found, result.violations


def test_outputs_check_compares_dtype_not_only_values(tmp_path: Path) -> None:
    """Equal values in another dtype are a violation of the outputs check, named as such."""
    folder = copy_build(tmp_path / "b", TINY)
    cast_output_to_double(folder)
    rehash(folder)
    outputs = [v for v in validate_build(folder).violations if v.check == "outputs"]
    assert len(outputs) == 1 and "'logits' (dtype float32 vs float64)" in outputs[0].message, outputs


def test_flipped_code_needs_a_second_copy(tmp_path: Path) -> None:
    """A changed value inside a used cell is seen against model.cim.onnx or the source model;
    without either, validate says what it could not check instead of pretending."""
    folder = copy_build(tmp_path / "b", TINY)
    flip_code(folder)
    (folder / "model.cim.onnx").unlink()
    manifest = read_json(folder, "manifest.json")
    manifest["input"]["kind"] = "onnx"
    write_json(folder, "manifest.json", manifest)
    rehash(folder)
    result = validate_build(folder, reference=True)  # no model.cim.onnx, no source: nothing proves graph.json
    assert {(v.check, v.where) for v in result.violations} == {("graph", "model.cim.onnx"), ("reference", "source")}
    assert any("--model" in v.message for v in result.violations)
    source = tmp_path / "tiny.onnx"
    export_onnx(TINY, source)
    caught = validate_build(folder, reference=source)
    assert [v.check for v in caught.violations] == ["graph", "reference"]
    assert "cell(s) differ" in caught.violations[1].message


def test_a_rebuild_that_fails_is_a_violation(tmp_path: Path) -> None:
    """``--rebuild`` asks for a proof: options that cannot be replayed are a violation, not a note."""
    folder = copy_build(tmp_path / "b", TINY)
    manifest = read_json(folder, "manifest.json")
    manifest["options"]["no_such_option"] = 1
    write_json(folder, "manifest.json", manifest)
    result = validate_build(folder, reference=True)
    assert [v.check for v in result.violations] == ["reference"], result.violations
    assert "cannot be replayed" in result.violations[0].message
    cli = CliRunner().invoke(main, ["validate", str(folder), "--rebuild"])
    assert cli.exit_code == 8 and "weights not compared" in cli.output


def test_every_violation_is_listed(tmp_path: Path) -> None:
    folder = copy_build(tmp_path / "b", TINY)
    for tamper in (edit_report_md, swap_steps, duplicate_column, lambda f: _move(f, True, True)):
        tamper(folder)
    (folder / "extra.bin").write_bytes(b"x")
    (folder / "graph.txt").unlink()
    manifest = read_json(folder, "manifest.json")
    manifest["schema_version"] = 99
    write_json(folder, "manifest.json", manifest)
    result = validate_build(folder, reference=False)
    found = {(v.check, v.where) for v in result.violations}
    assert {("sha256", "extra.bin"), ("sha256", "graph.txt"), ("manifest", "manifest.json")} <= found
    assert {"report", "schedule", "layout", "placement", "schemas"} <= {v.check for v in result.violations}


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    clean = runner.invoke(main, ["validate", str(build(TINY))])
    assert clean.exit_code == 0 and "valid" in clean.output and "reference" not in clean.output
    rebuilt = runner.invoke(main, ["validate", str(build(TINY)), "--rebuild"])
    assert rebuilt.exit_code == 0 and "reference" in rebuilt.output
    folder = copy_build(tmp_path / "b", TINY)
    edit_report_md(folder)
    swap_steps(folder)
    rehash(folder)
    bad = runner.invoke(main, ["validate", str(folder)])
    assert bad.exit_code == 8
    assert "[report] report.md row node_conv2d_1: bitlines is '41'" in bad.output
    count = len(validate_build(folder, reference=False).violations)
    assert "[schedule] step 0 (node_relu): runs before its input's producer node_conv2d" in bad.output
    assert f"{count} violations in" in bad.output and bad.output.count("\n  [") == count - 1
    as_json = runner.invoke(main, ["--json", "validate", str(folder)])
    doc = json.loads(as_json.output)
    assert as_json.exit_code == 8 and doc["error"] == "invalid-build"
    listed = doc["details"]["violations"]
    assert len(listed) == count >= 2


def test_wrong_model_file_is_a_violation(tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    export_onnx("digits_cnn", other)
    result = validate_build(build(TINY), reference=other)
    assert [v.check for v in result.violations] == ["reference"]
    assert "not the model this build was compiled from" in result.violations[0].message


def test_not_a_build(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 8 and "manifest.json" in result.output


@pytest.mark.torch  # the paper's zoo models are exported with torch
@pytest.mark.slow
@pytest.mark.parametrize(("name", "options", "reference"), [("vgg9", {}, True),
                                                            ("resnet18", {"bitline_budget": 4096}, False)])
def test_paper_models_are_valid(name: str, options: dict[str, object], reference: bool) -> None:
    result = validate_build(build(name, **options), reference=reference)
    assert result.violations == []
    assert any("model.cim.onnx" in note for note in result.notes)
