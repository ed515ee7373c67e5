"""Determinism: the same model gives byte-identical build directories, compiled twice in one
process or in two processes with different hash seeds, working folders, model folders and
output paths (no path, time, hash order or process state leaks into the files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cimc.api import compile_model
from tests.corpus.make_corpus import HERE

CLI = "import sys; from cimc.cli.main import main; sys.argv[0] = 'cimc'; main()"
MODELS = [("valid.onnx", ()), ("hostile_names.onnx", ("--map-fc",)), ("unsorted.onnx", ("--tiling", "dense"))]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def compile_in_subprocess(model: Path, out: Path, args: tuple[str, ...], cwd: Path, seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    proc = subprocess.run([sys.executable, "-c", CLI, "--json", "compile", str(model), "-o", str(out), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("name", "args"), MODELS, ids=[m for m, _ in MODELS])
def test_same_process_twice(tmp_path: Path, name: str, args: tuple[str, ...]) -> None:
    overrides = {"map_fc": "--map-fc" in args, "tiling": "dense" if "dense" in args else "channel"}
    compile_model(HERE / name, tmp_path / "one", **overrides)
    compile_model(HERE / name, tmp_path / "two", **overrides)
    first, second = files(tmp_path / "one"), files(tmp_path / "two")
    assert len(first) >= 7 and first == second


@pytest.mark.parametrize(("name", "args"), MODELS[:2], ids=[m for m, _ in MODELS[:2]])
def test_two_processes(tmp_path: Path, name: str, args: tuple[str, ...]) -> None:
    runs = [("x", "out", "0"), ("y/deeper", "z/another-name", "4242")]
    for folder, out, seed in runs:
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(HERE / name, tmp_path / folder / name)
        compile_in_subprocess(tmp_path / folder / name, tmp_path / out, args, cwd=tmp_path / folder, seed=seed)
    first, second = files(tmp_path / "out"), files(tmp_path / "z/another-name")
    assert len(first) >= 7 and first == second
    assert str(tmp_path).encode() not in b"".join(first.values())  # no absolute path in any file
