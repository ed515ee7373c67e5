"""``layout.json`` records each CIM layer's conv geometry: the ONNX attributes of a strided,
padded, dilated, grouped conv, a fully connected layer as a 1×1 conv, and ``cimc validate``
catches a geometry that contradicts the layer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cimc.api import compile_model
from cimc.build.directory import sha256
from cimc.documents import dumps
from cimc.documents.layout import Layout
from cimc.emulator.validate import validate_build
from tests.onnx_builders import feeds_for, make_model, node, rand, run_ort

CONV = {"strides": [2, 3], "pads": [1, 0, 2, 1], "dilations": [2, 1], "group": 2}


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A conv (attributes ``CONV``, kernel 3×2) into Flatten and Gemm, compiled with ``--map-fc``."""
    w = rand(6, 2, 3, 2, seed=1)
    nodes = [node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 2], **CONV), node("Relu", ["c"], ["r"]),
             node("Flatten", ["r"], ["f"]), node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    conv_out = (2, 6, (11 + 1 + 2 - 2 * 2 - 1) // 2 + 1, (13 + 0 + 1 - 1 - 1) // 3 + 1)
    features = int(np.prod(conv_out[1:]))
    model = make_model(nodes, {"x": [2, 4, 11, 13]}, ["y"],
                       {"w": w, "b": rand(6, seed=2), "fw": rand(5, features, seed=3), "fb": rand(5, seed=4)})
    shapes = {"c": conv_out, "y": run_ort(model, feeds_for(model))["y"].shape}
    folder = tmp_path_factory.mktemp("geometry")
    (folder / "m.onnx").write_bytes(model.SerializeToString())
    compile_model(folder / "m.onnx", folder / "b", map_fc=True)
    return folder / "b", shapes


def test_conv_geometry_is_the_onnx_attributes(build: tuple[Path, dict[str, tuple[int, ...]]]) -> None:
    folder, shapes = build
    conv, fc = Layout.model_validate_json((folder / "layout.json").read_bytes()).layers
    g = conv.geometry
    assert (g.strides, g.pads, g.dilations, g.group) == (CONV["strides"], CONV["pads"], CONV["dilations"], 2)
    assert g.in_shape == [2, 4, 11, 13] and g.out_shape == list(shapes["c"])
    assert g.out_shape[2] * g.out_shape[3] == conv.out_pixels and conv.kernel == [3, 2]
    f = fc.geometry
    features = int(np.prod(shapes["c"][1:]))
    assert (f.strides, f.pads, f.dilations, f.group) == ([1, 1], [0, 0, 0, 0], [1, 1], 1)
    assert f.in_shape == [2, features, 1, 1] and f.out_shape == [2, shapes["y"][1], 1, 1]
    assert validate_build(folder).ok


def _tamper(folder: Path, change: dict[str, object]) -> None:
    """Change the conv layer's geometry and re-sign the manifest (only the geometry is wrong)."""
    layout = json.loads((folder / "layout.json").read_bytes())
    layout["layers"][0]["geometry"].update(change)
    data = dumps(layout, compact=True)
    (folder / "layout.json").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_bytes())
    manifest["files"]["layout.json"] = sha256(data)
    (folder / "manifest.json").write_bytes(dumps(manifest))


@pytest.mark.parametrize(("change", "message"), [
    ({"strides": [1, 3]}, "geometry output size"),
    ({"pads": [1, 0, 2, 2], "out_shape": [2, 6, 6, 5]}, "in graph.json"),
    ({"in_shape": [2, 3, 11, 13]}, "disagree with groups"),
])
def test_validate_catches_a_wrong_geometry(build: tuple[Path, dict[str, tuple[int, ...]]], tmp_path: Path,
                                           change: dict[str, object], message: str) -> None:
    import shutil

    folder = shutil.copytree(build[0], tmp_path / "b")
    _tamper(folder, change)
    result = validate_build(folder)
    layout = [v.message for v in result.violations if v.check == "layout"]
    assert any(message in m for m in layout), result.violations
