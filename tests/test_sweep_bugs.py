"""A bug in cimc (any exception that is not a ``CimcError``) during a sweep point is not a quiet
``status: "error"``: it is recorded as ``status: "bug"`` with its traceback, rerun on resume,
and ``cimc sweep`` exits non-zero; refusals (``CimcError``) stay recorded errors; a model file that is
not ONNX is refused before any point runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cimc.cli.main import main
from cimc.sweep import point
from cimc.sweep.config import parse_config
from cimc.sweep.run import plan_from_config, run_sweep
from cimc.sweep.store import done_keys, read_records
from tests.sweep_helpers import write_config

# tiny_cnn on budgets 64 (a refusal: less than one paper macro), 256 and 512 (the injected bug)
AXES = {"bitline_budget": [64, 256, 512]}
TOML = 'model = "tiny_cnn"\n[axes]\nbitline_budget = [64, 256, 512]\n'


def _bug_at_512(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = point._figures

    def figures(blob: Any, task: point.Task) -> dict[str, Any]:
        calls.append(task.point["bitline_budget"])
        if task.point["bitline_budget"] == 512:
            return [][1]  # an IndexError: stands for any bug
        return real(blob, task)

    monkeypatch.setattr(point, "_figures", figures)
    return calls


def test_internal_error_is_recorded_as_a_bug_with_its_traceback(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _bug_at_512(monkeypatch)
    out = tmp_path / "s.jsonl"
    summary = run_sweep(plan_from_config(parse_config({"model": "tiny_cnn", "axes": AXES})), out, engine="serial")
    assert (summary.failed, summary.bugs) == (2, 1)
    by_budget = {r["point"]["bitline_budget"]: r for r in read_records(out)}
    assert by_budget[256]["status"] == "ok"
    assert by_budget[64]["status"] == "error" and by_budget[64]["error"]["kind"] == "mapping-infeasible"
    bug = by_budget[512]
    assert bug["status"] == "bug" and bug["error"]["kind"] == "internal"
    assert bug["error"]["message"].startswith("IndexError")
    assert "in figures" in bug["error"]["traceback"] and "IndexError" in bug["error"]["traceback"]
    assert done_keys(out) == {by_budget[64]["key"], by_budget[256]["key"]}  # the bug is never done
    calls.clear()
    again = run_sweep(plan_from_config(parse_config({"model": "tiny_cnn", "axes": AXES})), out, engine="serial")
    assert calls == [512] and again.bugs == 1


def test_cli_sweep_exits_non_zero_after_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _bug_at_512(monkeypatch)
    config = write_config(tmp_path, TOML)
    out = tmp_path / "s.jsonl"
    result = CliRunner().invoke(main, ["--json", "sweep", str(config), "-o", str(out), "--engine", "serial",
                                       "--no-plot"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["run"]["bugs"] == 1 and (doc["ok"], doc["failed"]) == (1, 2)
    assert "1 point(s) hit an internal error" in result.stderr
    monkeypatch.undo()
    fixed = CliRunner().invoke(main, ["--json", "sweep", str(config), "-o", str(out), "--engine", "serial",
                                      "--no-plot"])
    assert fixed.exit_code == 0, fixed.output  # the bug fixed: the point reruns, the sweep passes
    assert json.loads(fixed.stdout.strip().splitlines()[-1])["run"]["evaluated"] == 1


def test_a_file_that_is_not_onnx_fails_the_sweep_typed_before_any_point(tmp_path: Path) -> None:
    """A model file the importer refuses is the user's error (invalid-model), reported once before
    anything runs, not one "bug" record with a protobuf traceback per point."""
    (tmp_path / "bad.onnx").write_bytes(b"garbage\x00\x01\x02")
    config = write_config(tmp_path, 'model = "bad.onnx"\n[axes]\nbitline_budget = [256, 512]\n')
    out = tmp_path / "s.jsonl"
    result = CliRunner().invoke(main, ["--json", "sweep", str(config), "-o", str(out), "--engine", "serial",
                                       "--no-plot"])
    assert json.loads(result.stdout)["error"] == "invalid-model", result.output
    assert result.exit_code not in (0, 1) and not out.exists()
    blob = point.ModelBlob("onnx", "bad.onnx", "0" * 64, b"garbage\x00\x01\x02")
    settings = parse_config({"model": "tiny_cnn"}).settings
    record = point.evaluate_point(blob, point.Task("k", {"bitline_budget": 256}, settings))
    assert record["status"] == "error" and record["error"]["kind"] == "invalid-model"
