"""Smoke tests of the benchmark harness and helpers (no timed assertion anywhere).

The harness is run on trivial benchmarks whose calls are recorded, so the tests check what
it does — warm-up, alternating order, repeats, teardown, crash reporting, the JSON file —
and the model generator, the slope fit and the import hygiene the start-up benchmark is about.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from benchmarks import run as bench_run
from benchmarks.gen_models import params_at, resnet50_like, width_for
from benchmarks.harness import Benchmark, Result, Settings, measure, run_safely
from benchmarks.scaling import fit_slope


def _recording(name: str = "trivial", fail: bool = False) -> tuple[Benchmark, list[str]]:
    calls: list[str] = []

    def run(state: dict[str, Any]) -> None:
        if fail:
            raise RuntimeError("boom")
        calls.append("run")

    bench = Benchmark(name, setup=lambda: {"n": 0}, run=run, reference=lambda s: calls.append("ref"),
                      reference_name="nothing", target_ratio=2.0, teardown=lambda s: calls.append("teardown"))
    return bench, calls


def test_measure_alternates_and_reports_every_round() -> None:
    bench, calls = _recording()
    result = measure(bench, Settings(rounds=4, min_time=0.0))
    assert calls == ["run", "ref", "run", "ref", "ref", "run", "run", "ref", "ref", "run", "teardown"]
    assert len(result.run_times) == len(result.ref_times) == len(result.ratios) == 4
    doc = result.to_dict()
    assert doc["ratio_min"] <= doc["ratio_q1"] <= doc["ratio_median"] <= doc["ratio_q3"] <= doc["ratio_max"]
    assert doc["ratio_median"] == pytest.approx(float(np.median(result.ratios)))
    assert doc["target_met"] == (doc["ratio_median"] <= 2.0)


def test_fast_calls_are_repeated_per_timing() -> None:
    bench, calls = _recording()
    result = measure(bench, Settings(rounds=2, min_time=0.002))
    n_run, n_ref = result.repeats
    assert n_run > 1 and n_ref > 1
    assert calls.count("run") == 1 + 2 * n_run and calls.count("ref") == 1 + 2 * n_ref


def test_a_crash_is_reported_and_torn_down() -> None:
    bench, calls = _recording(fail=True)
    result = run_safely(bench, Settings(rounds=2))
    assert result.error == "RuntimeError: boom" and calls == ["teardown"]
    assert math.isnan(result.ratio) and result.met is None


def test_run_writes_json_and_exits_by_crashes_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good, _ = _recording("good")
    bad, _ = _recording("bad", fail=True)
    monkeypatch.setattr(bench_run, "discover", lambda quick: ([("bench_x", good), ("bench_x", bad)], []))
    out = tmp_path / "r.json"
    assert bench_run.main(["--quick", "--only", "good", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["results"]] == ["good"] and doc["quick"] is True
    assert doc["results"][0]["module"] == "bench_x" and len(doc["results"][0]["ratios"]) == 3
    assert {"cpu", "logical_cores", "python", "versions"} <= doc["machine"].keys()
    assert "torch" in doc["machine"]["versions"]
    assert bench_run.main(["--quick", "--json", str(out)]) == 1  # "bad" crashed


def test_discovery_finds_the_compile_and_startup_benchmarks() -> None:
    found, _ = bench_run.discover(quick=True)
    names = {bench.name for _, bench in found}
    assert {"compile/1M", "compile-map/resnet50", "startup/import-cli", "startup/compile-1M-file"} <= names
    assert next(b for _, b in found if b.name == "compile-map/resnet50").target_ratio == 2.0


def test_generated_model_is_valid_and_sized() -> None:
    width = width_for(2e6)
    assert params_at(width) == pytest.approx(2e6, rel=0.02)
    model = resnet50_like(0.1)
    onnx.checker.check_model(model)
    assert sum(math.prod(t.dims) for t in model.graph.initializer) == params_at(0.1)
    assert params_at(1.0) == 25_610_152  # ResNet-50: 25,557,032 weights + BatchNorm statistics
    assert resnet50_like(0.1).SerializeToString() == model.SerializeToString()  # deterministic


def test_slope_fit_recovers_the_exponent() -> None:
    p = np.array([1e6, 3e6, 1e7, 1e8])
    assert fit_slope(p, 3e-7 * p) == pytest.approx(1.0)
    assert fit_slope(p, 1e-12 * p**1.5) == pytest.approx(1.5)
    assert math.isnan(fit_slope([1e6], [1.0]))


def test_cli_import_stays_light() -> None:
    """``import cimc.cli.main`` (every command's start-up) pulls in neither torch nor onnx nor numpy."""
    code = "import sys, cimc.cli.main; print(sorted(m for m in ('torch', 'onnx', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["compile", "--help"], ["maps", "--help"], ["zoo", "list"]])
def test_help_and_listing_import_no_heavy_package(args: list[str]) -> None:
    """``cimc --help`` (and a command's help, the zoo's list) runs without importing torch,
    onnxruntime, matplotlib, onnx or numpy: start-up stays at Python's own plus click's."""
    code = ("import sys\nfrom cimc.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'matplotlib', 'onnx', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_compiling_a_file_does_not_import_torch(tmp_path: Path) -> None:
    onnx.save(resnet50_like(0.05, image=32, classes=10), tmp_path / "m.onnx")
    code = ("import sys; from cimc.api import compile_model; compile_model(sys.argv[1], sys.argv[2]); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx"), str(tmp_path / "b")],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"
    assert (tmp_path / "b" / "weights.safetensors").stat().st_size > 0


def test_result_without_rounds_is_nan() -> None:
    result = Result("x", "y", None)
    assert math.isnan(result.ratio) and result.quartiles()[0] != result.quartiles()[0]


def test_run_restores_the_cimc_log_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    bench, _ = _recording()
    monkeypatch.setattr(bench_run, "discover", lambda quick: ([("bench_x", bench)], []))
    before = logging.getLogger("cimc").level
    assert bench_run.main(["--quick", "--json", str(tmp_path / "r.json")]) == 0
    assert logging.getLogger("cimc").level == before
