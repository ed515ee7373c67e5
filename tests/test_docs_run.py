"""Every command block and Python snippet of README.md and docs/*.md runs (issue 18): a doc that
stops working fails the suite.

Shell blocks run with ``bash -eo pipefail`` in a fresh folder, with ``cimc`` and ``python3`` this
checkout's; Python blocks run as a script there. Each block is self-contained; the notes above a
fence (``tests/doc_blocks.py``) mark it slow, give it the user's files it assumes (a small ONNX
model, an image folder, an ``.npy``), scale a documented flag down, or skip it with a reason.
A block that needs torch carries ``pytest.mark.torch``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import HAS_TORCH
from tests.doc_blocks import INERT, ROOT, SHELL, Block, all_blocks, parse

BLOCKS, PROBLEMS = all_blocks()
RUN = [b for b in BLOCKS if b.runs]

#: Blocks (and lines) that are not run, each with its reason in the markdown. Few, and counted here
#: so that a new skip is a decision.
MAX_SKIPPED_BLOCKS = 3
MAX_SKIPPED_LINES = 6


def test_every_block_is_fenced_labelled_and_annotated_correctly() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)


def test_every_command_block_runs_or_says_why_not() -> None:
    code = [b for b in BLOCKS if b.lang not in INERT]
    skipped = [b for b in code if not b.runs]
    assert all(b.skip for b in skipped)
    assert len(skipped) <= MAX_SKIPPED_BLOCKS, [(b.id, b.skip) for b in skipped]
    assert sum(len(b.skip_lines) for b in code) <= MAX_SKIPPED_LINES
    assert len(RUN) >= 13, "the docs lost their examples, or the parser its blocks"


def test_the_parser_reports_what_would_escape_the_test(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("Text.\n\n    cimc compile x.onnx\n\n```\ncimc zoo list\n```\n\n"
                   "<!-- doc-test: skip-lines nope | why -->\n```bash\ncimc passes\n```\n\n"
                   "<!-- doc-test: given secrets.txt -->\n```python\nprint(1)\n```\n"
                   "<!-- doc-test: slow -->\n```bash\ncimc zoo list\n```\n", encoding="utf-8")
    blocks, problems = parse(doc)
    assert [b.lang for b in blocks] == ["", "bash", "python", "bash"] and blocks[3].slow and blocks[3].runs
    assert len(problems) == 4, problems
    assert any("indented command" in p for p in problems) and any("without a language" in p for p in problems)
    assert any("matches no line" in p for p in problems) and any("bad note" in p for p in problems)


def _python_commands_for(folder: Path) -> Path:
    """A ``bin`` folder with ``cimc`` and ``python3`` of this interpreter and checkout."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    exe = sys.executable
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{exe}" "$@"\n')
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{exe}" "$@"\n')
    (bin_dir / "cimc").write_text(
        f'#!/bin/sh\nexec "{exe}" -c \'import sys; from cimc.cli.main import main; sys.argv[0] = "cimc"; '
        f'main()\' "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def _dynamic_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv → Relu → GlobalAveragePool → Flatten on an input of symbolic shape ``(N, 3, H, W)``."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["logits"])]
    graph = helper.make_graph(nodes, "dynamic", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _given(name: str, folder: Path) -> None:
    """The user's files a block assumes: ``model.onnx`` (the zoo's tiny CNN, 3×8×8 → 10),
    ``dynamic.onnx`` (symbolic input dims), ``model.qdq.onnx`` (tiny CNN quantized by
    onnxruntime), ``imgs/{train,test}/<class>/*.png`` for it, ``x.npy`` (two inputs)."""
    rng = np.random.default_rng(0)
    if name == "model.onnx":
        shutil.copy(ROOT / "cimc" / "models" / "shipped" / "tiny_cnn.onnx", folder / name)
    elif name == "model.qdq.onnx":
        from tests.test_qdq_import import ort_qdq

        shutil.copy(ort_qdq(folder)[1], folder / name)
    elif name == "dynamic.onnx":
        onnx.save(_dynamic_model(rng), folder / name)
    elif name == "x.npy":
        np.save(folder / name, rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    elif name == "imgs":
        from PIL import Image

        for split in ("train", "test"):
            for cls in ("0", "1"):
                (folder / name / split / cls).mkdir(parents=True)
                for k in range(4):
                    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(folder / name / split / cls / f"{k}.png")


def _environment(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{_python_commands_for(folder)}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MPLBACKEND"] = "Agg"
    env.setdefault("CIMC_CACHE_DIR", str(folder / ".cache"))
    return env


def run_block(block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run one block in ``folder`` (with ``examples/`` linked in) and return the finished process."""
    (folder / "examples").symlink_to(ROOT / "examples")
    for name in block.given:
        _given(name, folder)
    script = block.script()
    if block.lang in SHELL:
        cmd = ["bash", "-eo", "pipefail", "-c", script]
    else:
        (folder / "snippet.py").write_text(script, encoding="utf-8")
        cmd = [sys.executable, "snippet.py"]
    return subprocess.run(cmd, cwd=folder, env=_environment(folder), capture_output=True, text=True,
                          timeout=900 if block.slow else 180, check=False)


def _param(block: Block) -> object:
    marks = [pytest.mark.slow] if block.slow else []
    if block.torch:
        marks += [pytest.mark.torch, pytest.mark.skipif(not HAS_TORCH, reason="needs torch")]
    marks += [pytest.mark.skipif(importlib.util.find_spec(m) is None, reason=f"needs {m}") for m in block.needs]
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in RUN])
def test_doc_block_runs(block: Block, tmp_path: Path) -> None:
    done = run_block(block, tmp_path)
    assert done.returncode == 0, (f"{block.id} failed (exit {done.returncode}):\n{block.script()}\n"
                                  f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")


def test_the_search_evidence_tables_are_the_results_file() -> None:
    """README.md and docs/search.md quote benchmarks/results/search_evidence.md as written (an
    old copy once contradicted the README)."""
    table = (ROOT / "benchmarks" / "results" / "search_evidence.md").read_text(encoding="utf-8").strip()
    for doc in (ROOT / "README.md", ROOT / "docs" / "search.md"):
        assert table in doc.read_text(encoding="utf-8"), f"{doc.name}: copy the table of search_evidence.md"


def test_the_sweep_config_shown_is_the_example() -> None:
    """docs/sweep.md's TOML block is ``examples/sweep.toml`` (comments aside), which
    tests/test_sweep_example.py runs."""
    shown = [b for b in BLOCKS if b.path.name == "sweep.md" and b.lang == "toml"]
    example = tomllib.loads((ROOT / "examples" / "sweep.toml").read_text(encoding="utf-8"))
    assert len(shown) == 1 and tomllib.loads(shown[0].code) == example


@pytest.mark.parametrize("call", ["compile_model(", "Emulator.open(", "prepare_phase(", "morph_loop(",
                                  "greedy_search("])
def test_a_python_example_of_each_command(call: str) -> None:
    """compile, emulate, qat, morph and search each have a Python example that runs."""
    assert any(call in b.code for b in RUN if b.lang == "python")
