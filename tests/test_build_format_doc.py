"""docs/build-format.md stays true: its worked example is what a fresh build computes, an
implementation written from the document alone (``scripts/build_format_example.spec_layer``)
equals the emulator bit for bit, and every top-level key of every JSON build file is named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import cimc.schemas as schemas
from cimc.api import CompileOptions, compile_model
from scripts.build_format_example import compare, compile_tiny, document_block, example_input, example_text
from tests.onnx_builders import make_model, rand

DOC = Path(__file__).resolve().parents[1] / "docs" / "build-format.md"
SCHEMAS = ("manifest", "layout", "quant", "graph", "schedule", "report")


@pytest.fixture(scope="module")
def tiny_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("format")
    return compile_tiny(root / "d1"), compile_tiny(root / "d2", w_bits=8, a_bits=8)


def test_worked_example_matches_a_fresh_build(tiny_builds: tuple[Path, Path]) -> None:
    assert document_block(DOC) == example_text(*tiny_builds), \
        "the worked example is stale: rerun python3 scripts/build_format_example.py and paste its output"


@pytest.mark.parametrize("which", [0, 1], ids=["unsliced", "sliced"])
def test_document_contract_equals_the_emulator(tiny_builds: tuple[Path, Path], which: int) -> None:
    assert compare(tiny_builds[which], example_input()) == ["node_conv2d", "node_conv2d_1", "node_conv2d_2"]


def geometry_model() -> tuple[bytes, np.ndarray]:
    """Grouped conv with strides, asymmetric pads and dilations, a depthwise conv, a Gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="grouped", group=2, strides=[2, 1],
                         pads=[1, 0, 2, 1], dilations=[1, 2], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], name="depthwise", group=6, pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Flatten", ["r1"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1),
    ]
    inits = {"w0": rand(6, 2, 3, 3, seed=1), "b0": rand(6, seed=2), "w1": rand(6, 1, 3, 3, seed=3),
             "w2": rand(5, 6 * 5 * 8, seed=4), "b2": rand(5, seed=5)}
    model = make_model(nodes, {"x": [2, 4, 9, 11]}, ["y"], inits)
    return model.SerializeToString(), rand(2, 4, 9, 11, seed=6)


@pytest.mark.parametrize("options", [{}, {"w_bits": 10, "a_bits": 6, "granularity": "column"}],
                         ids=["unsliced", "sliced-column"])
def test_geometry_groups_and_gemm_follow_the_document(tmp_path: Path, options: dict[str, int | str]) -> None:
    data, x = geometry_model()
    source = tmp_path / "geometry.onnx"
    source.write_bytes(data)
    compile_model(source, tmp_path / "build", CompileOptions(map_fc=True, **options))
    layout = json.loads((tmp_path / "build" / "layout.json").read_text())
    assert [layer["groups"] for layer in layout["layers"]] == [2, 6, 1]
    # wordline channels are group-relative: 0..Cin_g−1 whatever the output channel's group
    assert {c for s in layout["layers"][0]["segments"] for c in s["wordline_channel"]} == {0, 1}
    assert {c for s in layout["layers"][1]["segments"] for c in s["wordline_channel"]} == {0}
    assert compare(tmp_path / "build", x) == ["grouped", "depthwise", "fc"]


def top_level_keys(name: str) -> list[str]:
    return sorted(schemas.load(name)["properties"])


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_top_level_key_is_documented(name: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"## `{name}.json`", 1)
    assert len(section) == 2, f"docs/build-format.md has no section '## `{name}.json`'"
    body = section[1].split("\n## ", 1)[0]
    missing = [k for k in top_level_keys(name) if not re.search(rf"`{re.escape(k)}`", body)]
    assert not missing, f"{name}.json keys not described in its section of docs/build-format.md: {missing}"
