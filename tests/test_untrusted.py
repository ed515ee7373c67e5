"""Every file cimc reads goes through ``cimc.untrusted``: hostile files of each class (FIFO,
deep nesting, oversize, links out of the folder) end in a typed one-line error, promptly,
through the command line; and no allocation is made before a budget check (issue 16)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from cimc import untrusted
from cimc.build import reader
from cimc.cli.main import main
from cimc.errors import BuildError, CimcError, ResourceLimitError, UsageError
from cimc.frontend import import_onnx
from cimc.limits import NESTING_DEPTH
from cimc.ops.windows import CONV_WORKSPACE_BYTES
from cimc.quant.calibration import load_feeds, memory_need
from cimc.sweep.config import parse_config
from cimc.sweep.space import count, expand
from cimc.sweep.store import read_records
from tests.corpus.make_corpus import HERE

DEEP = 100_000
DEEP_JSON = "[" * DEEP + "]" * DEEP


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr


def one_line(code: int, err: str, exit_code: int, match: str) -> None:
    assert code == exit_code, err
    assert err.count("\n") == 1 and err.startswith("cimc: error [") and match in err, err
    assert "Traceback" not in err


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail (instead of hanging the suite) when a FIFO blocks a reader."""
    def _timeout(*_: Any) -> None:
        raise TimeoutError("a reader blocked")
    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("untrusted") / "build"
    assert cli("compile", str(HERE / "valid.onnx"), "-o", str(out))[0] == 0
    return out


def _copy(build: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "b"
    shutil.copytree(build, folder)
    return folder


def _rehash(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


# -- FIFOs never block -------------------------------------------------------------------------
def test_fifo_in_a_calib_folder_is_refused_promptly(tmp_path: Path, deadline: None) -> None:
    (tmp_path / "calib").mkdir()
    os.mkfifo(tmp_path / "calib" / "a.npy")
    start = time.monotonic()
    code, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "o"), "--calib", str(tmp_path / "calib"))
    one_line(code, err, 2, "a.npy is not a regular file")
    assert time.monotonic() - start < 30 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["macro", "bits", "sweep", "inputs", "results"])
def test_fifo_options_files_are_refused(tmp_path: Path, deadline: None, kind: str, build: Path) -> None:
    fifo = tmp_path / {"macro": "m.toml", "bits": "b.json", "sweep": "s.toml", "inputs": "x.npy",
                       "results": "r.jsonl"}[kind]
    os.mkfifo(fifo)
    args = {"macro": ("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "o"), "--macro", str(fifo)),
            "bits": ("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "o"), "--bits", str(fifo)),
            "sweep": ("sweep", str(fifo), "-o", str(tmp_path / "r.jsonl")),
            "inputs": ("emulate", str(build), "--inputs", str(fifo))}.get(kind)
    if args is None:
        with pytest.raises(UsageError, match="not a regular file"):
            read_records(fifo)
        return
    one_line(*cli(*args), 2, "not a regular file")


def test_fifo_build_file_is_refused(build: Path, tmp_path: Path, deadline: None) -> None:
    folder = _copy(build, tmp_path)
    (folder / "quant.json").unlink()
    os.mkfifo(folder / "quant.json")
    code, err = cli("validate", str(folder))
    assert code == 8 and "Traceback" not in err, err
    with pytest.raises(BuildError, match=r"quant\.json is not a regular file"):
        reader.read_bytes(folder / "quant.json")


def test_output_fifo_is_refused(build: Path, tmp_path: Path, deadline: None) -> None:
    fifo = tmp_path / "y.npy"
    os.mkfifo(fifo)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 4, 4), np.float32))
    one_line(*cli("emulate", str(build), "--inputs", str(tmp_path / "x.npy"), "--save-outputs", str(fifo)), 2,
             "not a regular file")
    with pytest.raises(UsageError, match="FIFO"):
        untrusted.refuse_special_output(fifo)
    untrusted.refuse_special_output(tmp_path / "absent.npy")  # absent or regular: fine


# -- nesting -----------------------------------------------------------------------------------
def test_deep_quant_json_in_a_build(build: Path, tmp_path: Path) -> None:
    folder = _copy(build, tmp_path)
    (folder / "quant.json").write_text(DEEP_JSON)
    _rehash(folder)
    for command in ("validate", "emulate"):
        extra = ("--inputs", str(tmp_path / "x.npy")) if command == "emulate" else ()
        np.save(tmp_path / "x.npy", np.zeros((1, 3, 4, 4), np.float32))
        code, err = cli(command, str(folder), *extra)
        assert code == 8 and "Traceback" not in err and "RecursionError" not in err, (command, err)
    with pytest.raises(BuildError, match=rf"quant\.json nests arrays or tables {DEEP:,} deep"):
        reader.read_json(folder / "quant.json")


def test_deep_layout_json_is_a_build_error(build: Path, tmp_path: Path) -> None:
    folder = _copy(build, tmp_path)
    (folder / "layout.json").write_text('{"macro": ' + DEEP_JSON + "}")
    _rehash(folder)
    code, err = cli("inspect", str(folder))
    assert code == 8 and "nests" in err and "Traceback" not in err, err


@pytest.mark.parametrize(("option", "name", "text"), [
    ("--macro", "m.json", DEEP_JSON), ("--macro", "m.toml", "a = " + DEEP_JSON), ("--bits", "b.json", DEEP_JSON),
    ("--bits", "b.toml", "x = " + DEEP_JSON), ("--macro", "d.toml", "a." * DEEP + "b = 1"),
    ("--bits", "h.toml", "[" + "a." * DEEP + "b]\nw_bits = 4")])
def test_deep_options_files(tmp_path: Path, option: str, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    code, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "o"), option, str(tmp_path / name))
    one_line(code, err, 2, "deep")


@pytest.mark.parametrize("text", ["[axes]\nw_bits = " + DEEP_JSON, "[fixed]\n" + "a." * DEEP + "b = 1",
                                  "x = " + "{a = " * DEEP + "1" + "}" * DEEP])
def test_deep_sweep_config(tmp_path: Path, text: str) -> None:
    (tmp_path / "s.toml").write_text('model = "digits_cnn"\n' + text)
    one_line(*cli("sweep", str(tmp_path / "s.toml"), "-o", str(tmp_path / "r.jsonl")), 2, "deep")


def test_deep_results_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a", "status": "error"}\n{"key": "b", "x": ' + DEEP_JSON + '}\n{"key": "c"}\n')
    assert [r["key"] for r in read_records(path)] == ["a", "c"]


# -- sizes -------------------------------------------------------------------------------------
def test_oversize_files_are_refused_before_reading(build: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "BUILD_TEXT_BYTES", 100)
    with pytest.raises(BuildError, match=r"report\.json is .* more than the limit of 100 bytes"):
        reader.read_bytes(build / "report.json")
    (tmp_path / "m.toml").write_text('preset = "paper"\n' + "#" * (16 * 2**20))
    one_line(*cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "o"), "--macro",
                  str(tmp_path / "m.toml")), 2, "more than the limit of 16777216 bytes")


def test_a_file_that_is_not_its_size_is_refused(tmp_path: Path) -> None:
    """A regular file whose ``st_size`` lies (``/proc``) is read as its size found, and refused."""
    proc = Path("/proc/self/status")
    if not proc.exists():
        pytest.skip("no /proc")
    with pytest.raises(UsageError, match="changed while it was read"):
        untrusted.read_regular(proc, limit=2**20, root=Path("/proc"))


# -- links -------------------------------------------------------------------------------------
def test_links_out_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "m.toml").write_text('preset = "paper"\n')
    (tmp_path / "in").mkdir()
    os.symlink(tmp_path / "outside" / "m.toml", tmp_path / "in" / "m.toml")
    one_line(*cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "o"), "--macro",
                  str(tmp_path / "in" / "m.toml")), 7, "outside its folder")
    os.symlink("m.toml", tmp_path / "outside" / "alias.toml")  # a link inside its folder is fine
    assert untrusted.read_regular(tmp_path / "outside" / "alias.toml", limit=100) == b'preset = "paper"\n'
    with pytest.raises(BuildError, match="symbolic link"):
        untrusted.read_regular(tmp_path / "outside" / "alias.toml", limit=100, error=BuildError, links=False)


# -- the nesting scan agrees with the parsers ------------------------------------------------------
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text("[]{}\"\\ab,:'#\n"),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text("[]{}\"\\a'", max_size=3), c,
                                                                          max_size=3), max_leaves=40)


def _depth(value: Any) -> int:
    return untrusted.value_depth(value)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_JSON, st.integers(0, 3))
def test_json_reader_matches_json_and_bounds_depth(value: Any, wrap: int) -> None:
    text = "[" * wrap * 30 + json.dumps(value) + "]" * wrap * 30
    depth = _depth(value) + wrap * 30
    if depth <= NESTING_DEPTH:
        assert untrusted.load_json(text.encode(), "x") == json.loads(text)
    else:
        with pytest.raises(UsageError, match="nests"):
            untrusted.load_json(text.encode(), "x")
    assert untrusted.bracket_depth(text.encode()) >= depth


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=200) | st.text("[]{}\"'\\#=.a1 \n,").map(str.encode))
def test_readers_raise_only_typed_errors(data: bytes) -> None:
    for load in (untrusted.load_json, untrusted.load_toml):
        with contextlib.suppress(UsageError):  # any other exception fails the test
            load(data, "x")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(["a", "b", '"q.q"', "'l.l'"]), min_size=1, max_size=4), st.integers(1, 80),
       st.sampled_from(["key", "header", "inline"]))
def test_toml_reader_matches_tomllib_and_bounds_keys(parts: list[str], deep: int, where: str) -> None:
    import tomllib

    key = ".".join(parts * deep)
    text = {"key": f"{key} = 1.5\n", "header": f"[{key}]\nv = [1.5, 2.5]\n", "inline": f"t = {{{key} = 1}}\n"}[where]
    try:
        want: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        want = None
    nest = len(parts) * deep + 1  # the key's tables, and the value's array or table
    if nest < NESTING_DEPTH and want is not None:
        assert untrusted.load_toml(text.encode(), "x") == want
    elif nest > NESTING_DEPTH + 1 or want is None:
        with pytest.raises(UsageError):
            untrusted.load_toml(text.encode(), "x")


# -- no allocation before a budget check -----------------------------------------------------------
def _big_input_model(side: int = 2048) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_calibration_checks_its_memory_before_loading(tmp_path: Path) -> None:
    """A valid 1×3×2048×2048 model: calibrating 16 samples would need ~1.9 GB (its activations;
    the Conv runs in chunks of ``CONV_WORKSPACE_BYTES``, not as one 6.75 GiB im2col); refused
    before a byte is allocated, the hint naming the options."""
    graph = import_onnx(_big_input_model())
    need = memory_need(graph, 16)
    assert need == 16 * (3 + 4) * 2048 * 2048 * 4 + CONV_WORKSPACE_BYTES
    assert memory_need(graph, 1) == (3 + 4) * 2048 * 2048 * 4 + CONV_WORKSPACE_BYTES
    with pytest.raises(ResourceLimitError) as info:
        load_feeds(graph, "synthetic", 16, memory_budget=2**30)
    assert "--calib-size" in (info.value.hint or "") and "--max-tensor-bytes" in (info.value.hint or "")
    onnx.save(_big_input_model(6144), tmp_path / "big.onnx")  # ~17 GB: past the default 12 GiB budget
    one_line(*cli("compile", str(tmp_path / "big.onnx"), "-o", str(tmp_path / "o")), 5, "memory budget")


@pytest.mark.parametrize(("where", "value"), [("row_stop", 10**12), ("wordlines", 10**12)])
def test_layout_figures_are_checked_before_allocating(build: Path, tmp_path: Path, where: str, value: int) -> None:
    folder = _copy(build, tmp_path)
    layout = json.loads((folder / "layout.json").read_text())
    if where == "row_stop":
        layout["layers"][0]["segments"][0]["row_stop"] = value
        layout["layers"][0]["rows"] = value
    else:
        layout["macro"]["wordlines"] = value
    (folder / "layout.json").write_text(json.dumps(layout))
    _rehash(folder)
    with pytest.raises(BuildError, match=r"memory budget|wordlines"):
        _ = reader.read_build(folder).layout
    code, err = cli("validate", str(folder))
    assert code == 8 and "internal error" not in err, err


def test_a_huge_sweep_grid_is_counted_not_made() -> None:
    axes = {"bitline_budget": list(range(1, 1001)), "morph_lambda": [i / 1000 for i in range(1000)],
            "macro": {"load_cycles": list(range(1, 1001))}}
    config = parse_config({"model": "tiny_cnn", "axes": axes})
    assert count(config) == 10**9
    with pytest.raises(ResourceLimitError, match="1,000,000,000 points"):
        expand(config)
    random = parse_config({"model": "tiny_cnn", "mode": "random", "samples": 5, "axes": axes})
    assert count(random) == 5 and len(expand(random)) == 5
    keys = ("load_cycles", "wordlines", "bitlines", "adcs", "bitlines_per_adc")
    wide = {**axes, "macro": {k: list(range(1, 1001)) for k in keys}}
    huge = parse_config({"model": "tiny_cnn", "mode": "random", "samples": 5, "axes": wide})  # 10^21: past int64
    points = expand(huge)
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 5 and points == expand(huge)


def test_every_error_is_a_cimc_error() -> None:
    """The readers raise only the typed errors (the CLI's one-line contract rests on it)."""
    for bad in (b"\xff\xfe", b"{", b"[1,]", b"a = ", b"[[x]]\n[x]"):
        for load in (untrusted.load_json, untrusted.load_toml):
            with pytest.raises(CimcError):
                load(bad, "x")


def test_external_data_without_length_reads_only_what_the_tensor_needs(tmp_path: Path) -> None:
    """A 432-byte weight at the start of a 4 MB file, no ``length``: the model loads with a
    3,000-byte limit (only the tensor's bytes count) and holds exactly them."""
    from cimc.frontend.loader import load_model
    from tests.corpus.make_corpus import W_BYTES, external

    model = external("w.bin")
    tensor = next(t for t in model.graph.initializer if t.name == "w")
    del tensor.external_data[2]  # no length
    assert [e.key for e in tensor.external_data] == ["location", "offset"]
    onnx.save(model, tmp_path / "m.onnx")
    (tmp_path / "w.bin").write_bytes(W_BYTES + b"\0" * 4_000_000)
    loaded = load_model(tmp_path / "m.onnx", max_bytes=3000)
    assert next(t for t in loaded.graph.initializer if t.name == "w").raw_data == W_BYTES
    with pytest.raises(UsageError, match="not a regular file"):  # a folder: refused before fdopen
        untrusted.read_regular(HERE, limit=10, root=HERE.parent)


@pytest.mark.parametrize("header", [DEEP_JSON.encode(), b"{}"])
def test_safetensors_headers_are_checked(build: Path, tmp_path: Path, header: bytes) -> None:
    """A deep header, or a header length past the end, is a ``BuildError`` before the library runs."""
    folder = _copy(build, tmp_path)
    size = len(header) if header != b"{}" else 10**9
    (folder / "weights.safetensors").write_bytes(size.to_bytes(8, "little") + header)
    _rehash(folder)
    with pytest.raises(BuildError, match=r"nests|header length"):
        reader.load_weights(folder / "weights.safetensors")
    code, err = cli("validate", str(folder))
    assert code == 8 and "internal error" not in err, err


def test_evaluation_checks_its_memory_before_running() -> None:
    from cimc.evaluation import evaluator

    graph = import_onnx(HERE / "valid.onnx")
    x = np.zeros((8, *graph.shape(graph.inputs[0])[1:]), np.float32)
    with pytest.raises(ResourceLimitError) as info:
        evaluator(graph, [(x, np.zeros(8, np.int64))], memory_budget=memory_need(graph, 8) - 1)
    assert "--eval-size" in (info.value.hint or "")
    assert evaluator(graph, [(x, np.zeros(8, np.int64))], memory_budget=memory_need(graph, 8)) is not None
