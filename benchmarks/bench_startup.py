"""Whole commands as processes, start-up included, against plain-Python floors.

* ``startup/import-cli``: ``python3 -c "import cimc.cli.main"`` (what every ``cimc`` command pays
  before it does anything) against ``python3 -c "import onnx"``. The CLI imports neither
  onnx nor numpy nor torch until a command needs them; ``tests/test_benchmarks_quick.py``
  checks that torch stays out.
* ``startup/compile-1M-file``, ``startup/compile-vgg9-file`` (full runs only): ``cimc compile
  FILE`` on a generated 1 M-parameter model, and on the zoo's VGG9 (exported once in
  ``setup``), against a process doing the ONNX floor (``load`` + ``checker`` +
  ``infer_shapes``) on the same file.
* ``startup/compile-vgg9-zoo`` (full runs only): ``cimc compile vgg9``, which must import
  torch and export the model first, against ``python3 -c "import torch"``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Benchmark

FLOOR_SCRIPT = ("import sys, onnx; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m); "
                "onnx.shape_inference.infer_shapes(m)")


@dataclass
class ProcessState:
    folder: Path
    model: Path | None = None


def cimc_command() -> list[str]:
    """The installed ``cimc`` script, or the same entry point through this interpreter."""
    script = shutil.which("cimc")
    entry = "import sys; from cimc.cli.main import main; sys.exit(main())"
    return [script] if script else [sys.executable, "-c", entry]


def run_process(args: list[str]) -> None:
    """Run a command to completion; a failure is a crash of the benchmark."""
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def python(code: str, *args: str) -> None:
    run_process([sys.executable, "-c", code, *args])


def _temp() -> ProcessState:
    return ProcessState(Path(tempfile.mkdtemp(prefix="cimc-bench-startup-")))


def _with_vgg9() -> ProcessState:
    state = _temp()
    state.model = state.folder / "vgg9.onnx"
    run_process([*cimc_command(), "zoo", "export", "vgg9", "-o", str(state.model)])
    return state


def _cleanup(state: ProcessState) -> None:
    shutil.rmtree(state.folder, ignore_errors=True)


def import_cli() -> Benchmark:
    return Benchmark("startup/import-cli", _temp, lambda s: python("import cimc.cli.main"),
                     lambda s: python("import onnx"), 'python3 -c "import onnx"', teardown=_cleanup)


def compile_vgg9_file() -> Benchmark:
    return Benchmark(
        "startup/compile-vgg9-file", _with_vgg9,
        lambda s: run_process([*cimc_command(), "compile", str(s.model), "-o", str(s.folder / "build")]),
        lambda s: python(FLOOR_SCRIPT, str(s.model)),
        "python3: onnx load+checker+infer_shapes", teardown=_cleanup)


def compile_vgg9_zoo() -> Benchmark:
    return Benchmark(
        "startup/compile-vgg9-zoo", _temp,
        lambda s: run_process([*cimc_command(), "compile", "vgg9", "-o", str(s.folder / "build")]),
        lambda s: python("import torch"), 'python3 -c "import torch"', teardown=_cleanup, rounds=3)


def _with_small_model() -> ProcessState:
    from benchmarks.gen_models import write_model

    state = _temp()
    state.model = write_model(state.folder, 1e6, image=32)[0]
    return state


def compile_small_file() -> Benchmark:
    return Benchmark(
        "startup/compile-1M-file", _with_small_model,
        lambda s: run_process([*cimc_command(), "compile", str(s.model), "-o", str(s.folder / "build")]),
        lambda s: python(FLOOR_SCRIPT, str(s.model)),
        "python3: onnx load+checker+infer_shapes", teardown=_cleanup)


def benchmarks(quick: bool) -> list[Benchmark]:
    if quick:
        return [import_cli(), compile_small_file()]
    return [import_cli(), compile_small_file(), compile_vgg9_file(), compile_vgg9_zoo()]
