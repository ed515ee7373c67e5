"""The emulator: it reads only the build directory, refuses a tampered or incomplete build with a
``BuildError`` (exit code 8) naming what is wrong, and its CLI prints outputs, accuracy and
writes golden vectors consistent with what it computes."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from cimc.cli.main import main
from cimc.emulator import Emulator
from cimc.errors import BuildError
from cimc.ir.graph import Graph
from tests.cim_helpers import assert_three_way, compile_ir, small_cnn, write

pytestmark = pytest.mark.torch  # the zoo or the training hook


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Graph]:
    graph, ctx = compile_ir(small_cnn(group=2))
    return write(graph, ctx, tmp_path_factory.mktemp("emu") / "b"), graph


@pytest.fixture(scope="module")
def build(compiled: tuple[Path, Graph]) -> Path:
    return compiled[0]


@pytest.fixture
def copy(build: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(build, tmp_path / "copy"))


def rehash(folder: Path, name: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_weights(folder: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    arrays = {k: v.copy() for k, v in load_file(str(folder / "weights.safetensors")).items()}
    change(arrays)
    save_file(arrays, str(folder / "weights.safetensors"))
    rehash(folder, "weights.safetensors")


def edit_json(folder: Path, name: str, change: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    doc = json.loads((folder / name).read_text())
    change(doc)
    (folder / name).write_text(json.dumps(doc))
    rehash(folder, name)


def test_emulator_matches_onnxruntime_and_reference(compiled: tuple[Path, Graph]) -> None:
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32)
    assert_three_way(*compiled, x)


def _first_used(arrays: dict[str, np.ndarray]) -> tuple[int, int]:
    w, b = np.nonzero(arrays["macro_0000"])
    return int(w[0]), int(b[0])


def _flip_beyond_range(arrays: dict[str, np.ndarray]) -> None:
    w, b = _first_used(arrays)
    arrays["macro_0000"][w, b] = 9  # a 4-bit cell holds -7..7


def _stray_code(arrays: dict[str, np.ndarray]) -> None:
    arrays["macro_0000"][31, 63] = 1  # the last bitline of macro 0 is idle


def _remove_column(layout: dict) -> None:  # type: ignore[type-arg]
    layout["macros"][0]["layer"][0] = -1


def _negative_step(quant: dict) -> None:  # type: ignore[type-arg]
    quant["layers"][1]["adc_step"] = [-1.0]


def _wrong_scale(quant: dict) -> None:  # type: ignore[type-arg]
    quant["layers"][0]["scale"] = [0.123]


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda f: edit_weights(f, _flip_beyond_range), "holds code 9, outside the 4-bit range ±7 of layer 0 \\('c1'\\)"),
    (lambda f: edit_weights(f, _stray_code), "wordline 31 bitline 63 holds code 1 but belongs to no column"),
    (lambda f: edit_json(f, "layout.json", _remove_column), "segment 0, output channel 0 is on no bitline"),
    (lambda f: edit_json(f, "quant.json", _negative_step), "quant.json does not match its schema at layers/1/adc_step"),
    (lambda f: edit_json(f, "quant.json", _wrong_scale), "layer 0 \\('c1'\\): the output scale is not 2\\^-k"),
    (lambda f: (f / "quant.json").write_text((f / "quant.json").read_text().replace("0", "1", 1)),
     "quant.json does not match the sha256"),
    (lambda f: (f / "graph.json").unlink(), "cannot read graph.json"),
    (lambda f: edit_weights(f, lambda a: a.update(macro_0000=a["macro_0000"][:16])),
     "macro_0000 has shape \\[16, 64\\], the macro is 32×64"),
    (lambda f: edit_json(f, "manifest.json", lambda m: m["files"].pop("quant.json")), "lacks quant.json"),
])
def test_tampered_builds_are_refused(copy: Path, tamper: Callable[[Path], None], message: str) -> None:
    tamper(copy)
    with pytest.raises(BuildError, match=message):
        Emulator.open(copy)


def test_float_weights_are_refused(copy: Path) -> None:
    edit_weights(copy, lambda arrays: arrays.update({k: v.astype(np.float32) for k, v in arrays.items()}))
    with pytest.raises(BuildError, match="not integer cell codes"):
        Emulator.open(copy)


def test_cli_exit_code_8_on_a_tampered_build(copy: Path, tmp_path: Path) -> None:
    edit_weights(copy, _flip_beyond_range)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    result = CliRunner().invoke(main, ["--json", "emulate", str(copy), "--inputs", str(tmp_path / "x.npy")])
    assert result.exit_code == 8
    assert json.loads(result.output)["error"] == "invalid-build"


def test_cli_outputs_and_golden_vectors(build: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(7).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["--json", "emulate", str(build), "--inputs", str(tmp_path / "x.npy"), "--golden", str(tmp_path / "g"),
            "--save-outputs", str(tmp_path / "y.npy")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    emulated = Emulator.open(build).run(x, record=True)
    y = emulated.outputs["fc.y"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), y)
    assert doc["top1"] == y.argmax(axis=1).tolist() and doc["samples"] == 3
    index = json.loads((tmp_path / "g" / "index.json").read_text())
    assert [layer["node"] for layer in index["layers"]] == ["c1", "c2", "fc"]
    for layer in index["layers"]:
        trace = emulated.traces[layer["node"]]
        files = {k: np.load(tmp_path / "g" / v["file"]) for k, v in layer["files"].items()}
        assert files["adc_codes"].dtype == np.int8 and files["sums"].dtype == np.int32
        np.testing.assert_array_equal(files["adc_codes"], trace.adc_codes)
        np.testing.assert_array_equal(files["sums"], files["adc_codes"].sum(axis=1))
        np.testing.assert_array_equal(files["outputs"], trace.outputs)
    np.testing.assert_array_equal(np.load(tmp_path / "g" / "input_0.npy"), x)


def test_cli_one_sample_and_usage_errors(build: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.ones((3, 8, 8), np.float32))
    result = CliRunner().invoke(main, ["emulate", str(build), "--inputs", str(tmp_path / "one.npy")])
    assert result.exit_code == 0 and "1 sample(s)" in result.output and "top-1 class" in result.output
    assert CliRunner().invoke(main, ["emulate", str(build)]).exit_code == 2
    np.save(tmp_path / "bad.npy", np.ones((2, 4, 8, 8), np.float32))
    bad = CliRunner().invoke(main, ["emulate", str(build), "--inputs", str(tmp_path / "bad.npy")])
    assert bad.exit_code == 2 and "expects [3, 8, 8]" in bad.output


def _shift_last_bias(folder: Path) -> None:
    edit_json(folder, "quant.json", lambda q: q["layers"][-1].update(bias=[b + 0.5 for b in q["layers"][-1]["bias"]]))


def _rename_output(graph: dict) -> None:  # type: ignore[type-arg]
    graph["nodes"][-1]["outputs"][0] = "renamed"
    graph["outputs"][0]["name"] = "renamed"


def test_validate_compares_the_outputs_even_when_graph_json_renames_them(copy: Path) -> None:
    """A tampered last CIM layer is caught by the emulator-vs-onnxruntime check, also when
    graph.json renames the output so that no tensor of model.cim.onnx shares its name."""
    from cimc.emulator.validate import validate_build

    assert "outputs" not in {v.check for v in validate_build(copy).violations}
    _shift_last_bias(copy)
    assert "outputs" in {v.check for v in validate_build(copy).violations}
    edit_json(copy, "graph.json", _rename_output)
    found = [v for v in validate_build(copy).violations if v.check == "outputs"]
    assert found and "'renamed' is computed by no node of model.cim.onnx" in found[0].message
