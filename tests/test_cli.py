"""The command line: compile, zoo, --json results and errors, --dump-ir."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cimc.cli.main import main


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_compile_zoo_model_prints_table_and_writes_build(tmp_path: Path) -> None:
    code, out, _ = invoke("compile", "tiny_cnn", "-o", str(tmp_path / "b"), "--bl", "256")
    assert code == 0, out
    assert "total" in out and "8,856" in out
    assert (tmp_path / "b" / "manifest.json").is_file()


def test_compile_json_and_dump_ir(tmp_path: Path) -> None:
    code, out, _ = invoke("--json", "compile", "tiny_cnn", "-o", str(tmp_path / "b"),
                          "--dump-ir", str(tmp_path / "ir"))
    assert code == 0
    assert json.loads(out)["totals"]["bitlines"] == 80
    dumps = sorted(p.name for p in (tmp_path / "ir").iterdir())
    assert dumps[0] == "00-input.txt" and any("place-bitlines" in d for d in dumps)


def test_errors_are_one_line_with_exit_code(tmp_path: Path) -> None:
    code, out, err = invoke("compile", "no_such_model", "-o", str(tmp_path / "b"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("cimc: error [usage]")
    assert "Traceback" not in out + err
    code, out, _ = invoke("--json", "compile", str(tmp_path), "-o", str(tmp_path / "b"))
    assert code == 2 and json.loads(out)["error"] == "usage"
    code, _, err = invoke("compile", "tiny_cnn", "--bl", "100", "-o", str(tmp_path / "c"))
    assert code == 6 and "--bl is 256" in err
    assert not (tmp_path / "c").exists()


def test_bad_input_shape_option(tmp_path: Path) -> None:
    code, _, err = invoke("compile", "tiny_cnn", "--input-shape", "input=1,x", "-o", str(tmp_path / "b"))
    assert code == 2 and "input-shape" in err


def test_zoo_list_and_export(tmp_path: Path) -> None:
    code, out, _ = invoke("zoo", "list")
    assert code == 0 and "vgg9" in out and "resnet18" in out
    code, _, _ = invoke("zoo", "export", "tiny_cnn", "-o", str(tmp_path / "t.onnx"))
    assert code == 0 and (tmp_path / "t.onnx").stat().st_size > 1000


def test_readme_exit_code_table_matches_the_errors() -> None:
    """The README's table of exit codes is the one ``cimc.errors`` defines."""
    import re

    from cimc.errors import EXIT_CODES

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rows = dict((kind, int(code)) for code, kind in re.findall(r"^\| (\d) \| `([a-z-]+)` \|", readme, re.M))
    assert {k: v for k, v in rows.items() if k != "error"} == EXIT_CODES


def test_global_flags_after_the_subcommand(tmp_path: Path) -> None:
    """``--json`` (and ``--debug``) work after the subcommand too, for results and for errors."""
    code, out, _ = invoke("compile", "tiny_cnn", "-o", str(tmp_path / "b"), "--json")
    assert code == 0 and json.loads(out)["totals"]["bitlines"] == 80
    code, out, _ = invoke("compile", str(tmp_path / "missing.onnx"), "--json", "--debug")
    assert code != 0 and "error" in json.loads(out)


def test_hoist_global_flags_stops_at_double_dash() -> None:
    from cimc.cli.common import hoist_global_flags

    hoisted = hoist_global_flags(["compile", "m", "--json", "--", "--debug"])
    assert hoisted == ["--json", "compile", "m", "--", "--debug"]


def test_console_tables_fit_100_columns_unless_wide(tmp_path: Path) -> None:
    """The default tables drop the detail columns (kept in report.md) and fit 100 columns; --wide
    shows every column."""
    code, out, _ = invoke("compile", "tiny_residual", "--map-fc", "-o", str(tmp_path / "a"))
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "bitlines" in out and "psums" not in out and "scale error" not in out
    code, wide, _ = invoke("compile", "tiny_residual", "--map-fc", "-o", str(tmp_path / "b"), "--wide")
    assert code == 0 and "psums" in wide and "scale error" in wide and "act. WL" in wide
    assert max(len(line) for line in wide.splitlines()) > 100


def test_narrow_tables_keep_the_distinctive_end_of_long_names() -> None:
    from io import StringIO

    from rich.console import Console

    from cimc.cli.tables import print_table

    buffer = StringIO()
    out = Console(file=buffer, width=100)
    names = [f"/features/features.{i}/conv/conv.0/conv.0.0/Conv" for i in (3, 13)]
    print_table(out, "t", ["layer", "x"], [[n, "1"] for n in names], wide=False)
    text = buffer.getvalue()
    assert "│ features.3.conv.0.0  │" in text and "│ features.13.conv.0.0 │" in text  # module paths, block in view
