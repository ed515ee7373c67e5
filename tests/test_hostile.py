"""Hostile and broken inputs through the command line: every case of ``tests/corpus`` ends in
its fixed exit code with one line on stderr (or one JSON object with ``--json``), no
traceback, nothing written outside the output folder and never a half build."""

from __future__ import annotations

import json
import os
import re
import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from cimc.cli.main import main
from cimc.errors import InvalidModelError, ResourceLimitError, UnsupportedError
from cimc.frontend import import_onnx
from cimc.safe_text import printable, safe_message, shorten
from tests.corpus.make_corpus import CASES, HERE, HOSTILE, W_BYTES, Case, external, one_conv, serialized, weights

ERRORS = [c for c in CASES if c.exit_code]


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def build_files(out: Path) -> set[str]:
    """The names a build must hold: the manifest's list plus the manifest, all fixed names."""
    names = {*json.loads((out / "manifest.json").read_text())["files"], "manifest.json"}
    assert {"layout.json", "weights.safetensors", "report.json"} <= names
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z]+)+", n) for n in names), names
    assert {p.name for p in out.iterdir()} == names
    return names


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_one_line_error(code: int, out: str, err: str, case: Case) -> None:
    assert code == case.exit_code, err
    assert err.count("\n") == 1 and err.startswith("cimc: error ["), err
    assert re.search(case.match, err), err
    assert "Traceback" not in out + err and "\0" not in err and "\x1b" not in err
    assert len(err) < 5000


# -- the corpus itself -------------------------------------------------------------------------
def test_corpus_is_small_and_up_to_date(tmp_path: Path) -> None:
    committed = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    assert committed < 1_000_000
    for case in CASES:
        assert (HERE / case.name).read_bytes() == serialized(case), f"rerun make_corpus.py ({case.name})"
        for rel, data in case.extra.items():
            assert (HERE / rel).read_bytes() == data, rel


# -- one test per case ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", ERRORS, ids=[c.name for c in ERRORS])
def test_bad_model_gives_one_line_and_exit_code(case: Case, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = cli("compile", str(HERE / case.name), "-o", str(out_dir), *case.args)
    assert_one_line_error(code, out, err, case)
    assert not out_dir.exists() and tree(tmp_path) == set()  # no output, no leftovers


@pytest.mark.parametrize("case", ERRORS[::3], ids=[c.name for c in ERRORS[::3]])
def test_json_error_object(case: Case, tmp_path: Path) -> None:
    code, out, err = cli("--json", "compile", str(HERE / case.name), "-o", str(tmp_path / "out"), *case.args)
    doc = json.loads(out)
    assert code == case.exit_code == doc["exit_code"] and err == ""
    assert set(doc) <= {"error", "exit_code", "message", "hint", "details"}
    assert re.search(case.match, doc["message"] + " " + doc.get("hint", ""))


@pytest.mark.parametrize("case", [c for c in CASES if not c.exit_code], ids=lambda c: c.name)
def test_accepted_models_compile(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    code, out, err = cli("--json", "compile", str(HERE / case.name), "-o", str(tmp_path / "out"), *case.args)
    assert code == 0, out + err
    assert json.loads(out)["totals"]["bitlines"] > 0
    build_files(tmp_path / "out")
    code, out, err = cli("validate", str(tmp_path / "out"))  # exit 0 only with a build validate accepts
    assert code == 0, out + err
    if case.name == "unsorted.onnx":
        assert "not topologically sorted" in caplog.text
    if case.name == "duplicate_node_names.onnx":
        assert "duplicate node name 'same' renamed to 'same_1'" in caplog.text


def test_hostile_names_never_become_file_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("compile", str(HERE / "hostile_names.onnx"), "-o", "out", "--map-fc", "--dump-ir", "ir")
    assert code == 0, err
    names = build_files(tmp_path / "out")
    cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "ref"), "--map-fc")
    assert names == build_files(tmp_path / "ref")  # the same names as any other build
    shutil.rmtree(tmp_path / "ref")
    assert tree(tmp_path) == {"out", "ir", *(f"out/{n}" for n in names),
                              *(f"ir/{p.name}" for p in (tmp_path / "ir").iterdir())}
    assert all(re.fullmatch(r"\d\d-[a-z-]+\.txt", p.name) for p in (tmp_path / "ir").iterdir())
    assert not list(Path("/tmp").glob("cimc-escape*")) and not Path("/etc/passwd#1").exists()
    assert "\x1b" not in out and "\0" not in out and "[bold]" in out  # markup shown, not obeyed
    assert max(len(line) for line in out.splitlines()) < 400 and "chars]" in out
    graph = (tmp_path / "out" / "graph.txt").read_text()
    assert HOSTILE[3] in graph  # the names are kept as data, only their display is cut


def test_hostile_name_in_error_is_shortened_and_escaped(tmp_path: Path) -> None:
    code, _, err = cli("compile", str(HERE / "hostile_unsupported.onnx"), "-o", str(tmp_path / "o"))
    assert code == 4 and err.count("\n") == 1
    assert "\\x1b[2J\\x0aLLLL" in err and "\\x00end" in err and "…[10018 chars]…" in err


# -- external data -------------------------------------------------------------------------------
def _escaping_model(tmp_path: Path, kind: str) -> Path:
    """``folder/m.onnx`` whose external weight file escapes the folder by ``kind``."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(W_BYTES)
    folder = tmp_path / "model"
    folder.mkdir()
    location = {"absolute": str(outside), "dotdot": "../outside.bin"}.get(kind, "w.bin")
    (folder / "m.onnx").write_bytes(external(location).SerializeToString())
    if kind == "symlink":
        os.symlink(outside, folder / "w.bin")
    elif kind == "hardlink":
        os.link(outside, folder / "w.bin")
    return folder / "m.onnx"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_external_data_escape_refused_unless_flag(tmp_path: Path, kind: str) -> None:
    model = _escaping_model(tmp_path, kind)
    code, _, err = cli("compile", str(model), "-o", str(tmp_path / "b"))
    assert code == 7 and err.count("\n") == 1 and "--allow-external-data-outside" in err, err
    assert not (tmp_path / "b").exists()
    code, _, err = cli("compile", str(model), "-o", str(tmp_path / "b"), "--allow-external-data-outside")
    assert code == 0, err
    inline = tmp_path / "inline.onnx"
    inline.write_bytes(one_conv().SerializeToString())
    assert cli("compile", str(inline), "-o", str(tmp_path / "c"))[0] == 0
    weights_file = "weights.safetensors"
    assert (tmp_path / "b" / weights_file).read_bytes() == (tmp_path / "c" / weights_file).read_bytes()


def test_corpus_dotdot_model_loads_with_flag(tmp_path: Path) -> None:
    path = HERE / "ext_dotdot/model/m.onnx"
    graph = import_onnx(path, allow_external_outside=True)
    np.testing.assert_array_equal(graph.initializers["w"], weights(4, 3, 3, 3))


def test_external_data_counts_toward_the_size_limit(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(external("w.bin").SerializeToString())
    (tmp_path / "w.bin").write_bytes(W_BYTES)
    limit = model.stat().st_size + 100  # the .onnx fits, its 432 external bytes do not
    code, _, err = cli("compile", str(model), "-o", str(tmp_path / "b"), "--max-model-bytes", str(limit))
    assert code == 5 and "external" in err
    assert cli("compile", str(model), "-o", str(tmp_path / "b"), "--max-model-bytes", str(limit + 432))[0] == 0


# -- budgets: refused in Python ints, before any big allocation -----------------------------------
@pytest.mark.parametrize("name", ["huge_input.onnx", "overflow_dims.onnx", "constant_of_shape_bomb.onnx",
                                  "expand_bomb.onnx"])
def test_memory_bombs_refused_without_allocating(name: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ResourceLimitError):
            import_onnx(HERE / name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_huge_file_refused_before_reading(tmp_path: Path) -> None:
    """A 3 GiB (sparse) file over the default 2 GiB limit: refused on its size, nothing read."""
    big = tmp_path / "big.onnx"
    with open(big, "wb") as fh:
        fh.truncate(3 * 2**30)
    tracemalloc.start()
    try:
        code, _, err = cli("compile", str(big), "-o", str(tmp_path / "b"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 5 and "more than the limit of 2147483648 bytes" in err
    assert peak < 64 * 2**20


def test_huge_input_shape_option_refused(tmp_path: Path) -> None:
    code, _, err = cli("compile", str(HERE / "symbolic_dims.onnx"), "--input-shape", "x=10000000,3,4,4",
                       "-o", str(tmp_path / "b"))
    assert code == 5 and "'x' (graph input)" in err


def test_tensor_budget_is_a_parameter() -> None:
    import_onnx(HERE / "valid.onnx", max_tensor_bytes=1000)
    with pytest.raises(ResourceLimitError, match=r"tensor 'c' .*\(1, 4, 4, 4\)"):
        import_onnx(HERE / "valid.onnx", max_tensor_bytes=200)


# -- the output folder ---------------------------------------------------------------------------
def test_foreign_output_folder_needs_force(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("keep")
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(target))
    assert code == 2 and "not made by cimc" in err and "--force" in err
    assert tree(tmp_path) == {"mine", "mine/thesis.tex"}
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(target), "--force")
    assert code == 0 and "thesis.tex" not in build_files(target)


@pytest.mark.parametrize("where", ["cwd", "parent", "home"])
def test_protected_folders_are_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("keep")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    target = {"cwd": ".", "parent": "..", "home": str(tmp_path / "home")}[where]
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", target, "--force")
    assert code == 2 and "refusing to replace" in err
    assert (work / "notes.txt").read_text() == "keep"


def test_output_symlinks_and_fifo_manifest(tmp_path: Path) -> None:
    os.symlink(tmp_path / "nowhere", tmp_path / "broken")
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "broken"))
    assert code == 2 and "broken symbolic link" in err
    real = tmp_path / "real"
    assert cli("compile", str(HERE / "valid.onnx"), "-o", str(real))[0] == 0
    os.symlink(real, tmp_path / "link")
    assert cli("compile", str(HERE / "unsorted.onnx"), "-o", str(tmp_path / "link"))[0] == 0
    assert (tmp_path / "link").is_symlink() and json.loads((real / "manifest.json").read_text())["input"]["name"] \
        == "unsorted.onnx"
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "manifest.json")  # would hang a reader: must be seen as "not cimc"
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(fifo_dir))
    assert code == 2 and "not made by cimc" in err


def test_nothing_written_outside_the_output_folder(tmp_path: Path) -> None:
    before = tree(tmp_path)
    code, _, _ = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "out"))
    assert code == 0
    assert tree(tmp_path) - before == {"out", *(f"out/{n}" for n in build_files(tmp_path / "out"))}


# -- the CLI's own errors ------------------------------------------------------------------------
@pytest.mark.parametrize("args", [("compile", "valid.onnx", "--bl", "0"), ("compile", "--no-such-option"),
                                  ("no-such-command",), ("compile", "valid.onnx", "--tiling", "diagonal")])
def test_usage_errors_are_one_line(args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)
    code, out, err = cli(*args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("cimc: error [usage]: ") and out == ""
    code, out, err = cli("--json", *args)
    assert code == 2 and json.loads(out)["error"] == "usage" and err == ""


def test_internal_errors_are_one_line_without_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cimc.api

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr(cimc.api, "build_files", boom)
    code, out, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "b"))
    assert code == 1 and err.count("\n") == 1 and "internal error: RuntimeError: simulated bug second" not in err
    assert "internal error: RuntimeError: simulated bug\\x0asecond line" in err and "--debug" in err
    assert "Traceback" not in out + err and not (tmp_path / "b").exists()
    result = CliRunner().invoke(main, ["--debug", "compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "b")])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)  # --debug: the real exception


# -- the frontend's checks, one level down -------------------------------------------------------
def _with_w(edit: Callable[[onnx.TensorProto], None]) -> onnx.ModelProto:
    model = one_conv()
    edit(next(t for t in model.graph.initializer if t.name == "w"))
    return model


@pytest.mark.parametrize(("edit", "error", "match"), [
    (lambda t: setattr(t, "raw_data", b"\0" * 1000), InvalidModelError, r"1000 bytes of raw data.*need 432"),
    (lambda t: (t.ClearField("raw_data"), t.float_data.extend([1.0] * 200)), InvalidModelError, "200 values"),
    (lambda t: setattr(t, "data_type", 77), InvalidModelError, "unknown data type 77"),
    (lambda t: setattr(t, "data_type", onnx.TensorProto.FLOAT4E2M1), UnsupportedError,
     "unsupported data type FLOAT4E2M1"),
    (lambda t: setattr(t, "data_type", onnx.TensorProto.INT4), InvalidModelError,  # two 4-bit values a byte
     r"432 bytes of raw data.*need 54"),
    (lambda t: t.dims.__setitem__(0, -4), InvalidModelError, "negative dim"),
])
def test_tensor_data_checks(edit: Callable[[onnx.TensorProto], None], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        import_onnx(_with_w(edit))


def test_constant_attribute_tensors_are_checked_and_never_read_from_disk() -> None:
    """A ``Constant`` whose tensor points at a file: refused, even from an in-memory model
    (the ONNX runtime would read it relative to the working folder)."""
    value = numpy_helper.from_array(np.zeros(3, np.float32), "k")
    value.ClearField("raw_data")
    value.data_location = onnx.TensorProto.EXTERNAL
    value.external_data.add(key="location", value="/etc/passwd")
    const = helper.make_node("Constant", [], ["k"], value=value)
    model = one_conv()
    model.graph.node.insert(0, const)
    model.graph.node[-1].op_type = "Add"
    model.graph.node[-1].input.append("k")
    with pytest.raises(InvalidModelError, match="still references external data"):
        import_onnx(model)
    value.ClearField("data_location")
    value.raw_data = b"\0" * 8
    model.graph.node[0].attribute[0].t.CopyFrom(value)
    with pytest.raises(InvalidModelError, match=r"'k' holds 8 bytes"):
        import_onnx(model)


def test_non_utf8_names_are_invalid(tmp_path: Path) -> None:
    data = bytearray((HERE / "valid.onnx").read_bytes())
    data[data.index(b"relu")] = 0x80
    (tmp_path / "m.onnx").write_bytes(bytes(data))
    with pytest.raises(InvalidModelError, match="not UTF-8"):
        import_onnx(tmp_path / "m.onnx")


@pytest.mark.parametrize(("group", "match"), [(0, "group=0"), (3, "group=3")])
def test_conv_group_must_fit(group: int, match: str) -> None:
    model = one_conv()
    model.graph.node[0].attribute.append(helper.make_attribute("group", group))
    with pytest.raises(InvalidModelError, match=match):
        import_onnx(model)


def test_safe_text() -> None:
    assert printable("a\0b\n\x1b[31m\u202eok") == "a\\x00b\\x0a\\x1b[31m\\u202eok"
    assert printable("plain ascii / ../ names") == "plain ascii / ../ names"
    long = "x" * 10_000
    assert shorten(long) == "x" * 120 + "…[10000 chars]…" + "x" * 40 and shorten("short") == "short"
    message = safe_message(f"node '{long}\n' failed: {'y' * 300} and {'z' * 9000}")
    assert "\n" not in message and len(message) < 700 and "…[10004 chars]…" in message
    assert safe_message(message) == message
    assert len(safe_message("w " * 5000)) < 4100


# -- round 2 (issue 16): build files, user files, terminals, bad values, failed writes -------------
def _rehash(folder: Path) -> None:
    import hashlib

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("round2") / "build"
    assert cli("compile", str(HERE / "valid.onnx"), "-o", str(out))[0] == 0
    return out


@pytest.mark.parametrize("name", ["report.json", "layout.json", "graph.json", "weights.safetensors", "manifest.json",
                                  "model.cim.onnx"])
def test_build_file_symlink_refused_and_never_read(small_build: Path, tmp_path: Path, name: str) -> None:
    """A build file that is a link to a file outside the build is refused before it is read:
    its content appears in no output of any command."""
    folder = tmp_path / "b"
    shutil.copytree(small_build, folder)
    secret = tmp_path / "secret.json"
    secret.write_text('{"model": "TOPSECRET", "macro": "TOPSECRET"}')
    (folder / name).unlink()
    os.symlink(secret, folder / name)
    for args in (("validate", str(folder)), ("inspect", str(folder)), ("emulate", str(folder)),
                 ("diff", str(small_build), str(folder)), ("--json", "validate", str(folder))):
        code, out, err = cli(*args)
        assert "TOPSECRET" not in out + err and "Traceback" not in out + err, args
        assert code != 0 or args[0] in ("diff", "inspect"), (args, out, err)  # these may not read that file
    _, out, err = cli("validate", str(folder))
    assert "symbolic link" in out + err


def test_inspect_escapes_terminal_sequences_from_a_build(small_build: Path, tmp_path: Path) -> None:
    folder = tmp_path / "b"
    shutil.copytree(small_build, folder)
    report = json.loads((folder / "report.json").read_text())
    report["model"] = "evil\x1b[2J\x1b]0;pwned\x07\u202e"
    (folder / "report.json").write_text(json.dumps(report))
    _rehash(folder)
    for args in (("inspect", str(folder)), ("validate", str(folder))):
        _, out, err = cli(*args)
        assert "\x1b" not in out + err and "\u202e" not in out + err, args
    assert "evil\\x1b[2J" in cli("inspect", str(folder))[1]


def test_user_files_in_a_build_folder_are_kept(small_build: Path, tmp_path: Path) -> None:
    """Recompiling into a build folder refuses (exit 2, naming the file) when it holds a file
    cimc did not write; a listed file missing also makes it not cimc's; ``--force`` replaces."""
    folder = tmp_path / "b"
    shutil.copytree(small_build, folder)
    (folder / "my_notes.txt").write_text("keep")
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(folder))
    assert code == 2 and "my_notes.txt" in err and "--force" in err
    assert (folder / "my_notes.txt").read_text() == "keep"
    (folder / "my_notes.txt").unlink()
    (folder / "graph.txt").unlink()
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(folder))
    assert code == 2 and "graph.txt" in err
    (folder / "sub").mkdir()
    assert cli("compile", str(HERE / "valid.onnx"), "-o", str(folder), "--force")[0] == 0
    assert build_files(folder) and not (folder / "sub").exists()
    assert cli("compile", str(HERE / "valid.onnx"), "-o", str(folder))[0] == 0  # an exact build: replaced


@pytest.mark.parametrize(("errno_code", "exit_code", "match"), [(28, 5, "No space left"), (30, 2, "Read-only"),
                                                                (13, 2, "Permission denied")])
def test_failed_writes_are_typed_and_keep_the_old_build(small_build: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, errno_code: int,
                                                        exit_code: int, match: str) -> None:
    import cimc.build.directory as directory

    folder = tmp_path / "b"
    shutil.copytree(small_build, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(path: Path, data: bytes) -> None:
        raise OSError(errno_code, os.strerror(errno_code), str(path))

    monkeypatch.setattr(directory, "_write", fail)
    code, _, err = cli("compile", str(HERE / "unsorted.onnx"), "-o", str(folder))
    assert code == exit_code and re.search(match, err) and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary folder left


def test_over_long_output_name_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / ("a" * 300)))
    assert code == 2 and "cannot write the build" in err


@pytest.mark.parametrize("args", [("qat", str(HERE / "valid.onnx"), "--lr", "nan", "-o", "q"),
                                  ("search", str(HERE / "valid.onnx"), "--max-acc-drop", "nan", "-o", "s"),
                                  ("search", str(HERE / "valid.onnx"), "--max-acc-drop", "inf", "-o", "s")])
def test_non_finite_cli_floats_are_usage_errors(args: tuple[str, ...], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*args)
    assert code == 2 and ("not a finite number" in err or "is not in the range" in err)  # FiniteFloat or a range
    assert list(tmp_path.iterdir()) == []


def test_sweep_morph_lambda_nan_is_a_usage_error(tmp_path: Path) -> None:
    from cimc.errors import UsageError
    from cimc.sweep.config import AXES

    with pytest.raises(UsageError, match="number >= 0 and finite"):
        AXES["morph_lambda"]("axes.morph_lambda[0]", float("nan"))


@pytest.mark.parametrize(("macro", "code", "match"), [('preset = "paper"\ncell_bits = 1\n', 0, ""),
                                                     ('preset = "paper"\nadc_bits = 1\n', 2, "at least 2 bits")])
def test_one_bit_macros(tmp_path: Path, macro: str, code: int, match: str) -> None:
    """1-bit cells compile (2-bit weights sliced over two cells) into a valid build; a 1-bit
    ADC is a usage error."""
    spec = tmp_path / "m.toml"
    spec.write_text(macro)
    got, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "out"), "--macro", str(spec))
    assert got == code and match in err
    if code == 0:
        assert cli("validate", str(tmp_path / "out"))[0] == 0


def test_calib_directory_named_npy_and_npz_without_samples(tmp_path: Path) -> None:
    (tmp_path / "calib" / "a.npy").mkdir(parents=True)
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "o1"), "--calib",
                       str(tmp_path / "calib"))
    assert code == 2 and "a.npy" in err
    np.savez(tmp_path / "zero.npz", x=np.zeros((0, 3, 4, 4), np.float32), y=np.zeros(0, np.int64))
    code, _, err = cli("compile", str(HERE / "valid.onnx"), "-o", str(tmp_path / "o2"), "--calib",
                       str(tmp_path / "zero.npz"))
    assert code == 2
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_lrn_kernel_sums_the_clipped_window() -> None:
    """The LRN kernel without padding equals the padded definition, for any size."""
    from cimc.ops import find

    x = np.random.default_rng(0).standard_normal((2, 5, 3, 3)).astype(np.float32)
    kernel = find("LRN").kernel
    for size in (1, 2, 3, 4, 5, 11, 2**31 - 1):
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        c = np.arange(5)
        win = np.stack([(x.astype(np.float64) ** 2)[:, max(i - lo, 0):min(i + hi, 4) + 1].sum(1) for i in c], 1)
        want = x / (1.0 + 1e-4 / size * win) ** 0.75
        got = kernel([x], {"alpha": 1e-4, "beta": 0.75, "bias": 1.0, "size": size})
        np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("dims", ["99999999999999999999999,3,4,4", "1,3,4,9223372036854775808"])
def test_input_shape_overflow_is_a_usage_error(tmp_path: Path, dims: str) -> None:
    code, _, err = cli("compile", str(HERE / "symbolic_dims.onnx"), "-o", str(tmp_path / "o"), "--input-shape",
                       f"x={dims}")
    assert code == 2 and "at most 2^62" in err


def test_graph_text_of_hostile_names_is_one_line_per_node(tmp_path: Path) -> None:
    assert cli("compile", str(HERE / "hostile_names.onnx"), "-o", str(tmp_path / "o"))[0] == 0
    text = (tmp_path / "o" / "graph.txt").read_text()
    assert "\x1b" not in text and "\0" not in text
    from cimc.build.graph_text import parse_graph_text

    assert parse_graph_text(text)[1] == []
