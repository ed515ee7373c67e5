"""Module paths from torch's dynamo exporter (``pkg.torch.onnx.name_scopes``): read safely on
import, kept as the layout's optional ``module``, shown by the views in place of ``node_conv2d_1``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from cimc.api import CompileOptions, compile_model
from cimc.build.reader import read_build
from cimc.cli.main import main
from cimc.frontend.module_paths import MAX_SCOPES_CHARS, SCOPES_KEY, scopes_path
from cimc.views.html_report import html_report
from cimc.views.names import short_names
from cimc.views.placement_map import _legend_labels

#: (node name, name_scopes value) of the three CIM layers; the last two share a module (a reused Linear).
LAYERS = [("node_conv2d", "['', 'features', 'features.0', 'conv2d']"),
          ("node_conv2d_1", "['', 'features', 'features.1', 'features.1.conv', 'features.1.conv.0', 'conv2d_1']"),
          ("node_conv2d_2", "['', 'features', 'features.2', 'features.2.conv', 'features.2.conv.0', 'conv2d_2']")]


@pytest.mark.parametrize(("value", "path"), [
    ("['', 'features', 'features.1', 'features.1.conv', 'features.1.conv.0', 'conv2d_1']", "features.1.conv.0"),
    ("['', 'fc', 'linear']", "fc"),
    ("['','layer1.0.conv1','conv2d']", "layer1.0.conv1"),
    ("['', 'view']", None),  # an op of the root module: no path
    ("['conv2d']", None), ("[]", None), ("", None),
    ("['', 'features', 'conv2d'", None),  # not closed
    ('["", "features", "conv2d"]', None),  # not the exporter's quoting
    ("['', 'a\\'b', 'conv2d']", None),  # escapes are not read
    ("['', 'fea\x1b[2Jtures', 'conv2d']", None),  # a terminal escape
    ("['', 'fea\ntures', 'conv2d']", None), ("['', 'a\u202eb', 'conv2d']", None),
    ("['', '../../etc', 'conv2d']", None), ("['', 'a..b', 'conv2d']", None),
    ("['', '" + "a" * 201 + "', 'conv2d']", None),  # a path past MAX_MODULE_PATH
    ("[" + ", ".join(["'a'"] * 2000) + "]", None),  # past MAX_SCOPES_CHARS
    ("__import__('os').system('true')", None)])
def test_scopes_path_reads_only_a_well_formed_bounded_list(value: str, path: str | None) -> None:
    assert scopes_path(value) == path


def test_a_long_but_bounded_value_is_read() -> None:
    value = "[" + ", ".join(["'a'"] * 100) + ", 'x.y', 'conv2d']"
    assert len(value) < MAX_SCOPES_CHARS and scopes_path(value) == "x.y"


def _model(layers: list[tuple[str, str | None]]) -> onnx.ModelProto:
    """Three 3×3 convs (1→4→4→4 channels, 6×6) as the dynamo exporter names them."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i, (name, scopes) in enumerate(layers):
        cin = 1 if i == 0 else 4
        inits.append(numpy_helper.from_array(rng.standard_normal((4, cin, 3, 3)).astype(np.float32), f"w{i}"))
        node = helper.make_node("Conv", [x, f"w{i}"], [f"y{i}"], name=name, pads=[1, 1, 1, 1])
        if scopes is not None:
            node.metadata_props.add(key=SCOPES_KEY, value=scopes)
        nodes.append(node)
        x = f"y{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _build(tmp_path: Path, layers: list[tuple[str, str | None]]) -> Path:
    tmp_path.mkdir(exist_ok=True)
    onnx.save(_model(layers), tmp_path / "m.onnx")
    compile_model(tmp_path / "m.onnx", tmp_path / "b")
    return tmp_path / "b"


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_module_paths_reach_the_layout_and_every_view(tmp_path: Path) -> None:
    folder = _build(tmp_path, LAYERS)
    layout = json.loads((folder / "layout.json").read_text())
    assert [x.get("module") for x in layout["layers"]] == ["features.0", "features.1.conv.0", "features.2.conv.0"]
    assert [x["node"] for x in layout["layers"]] == [n for n, _ in LAYERS]
    overview = _run("inspect", str(folder))
    assert all(p in overview for p in ("features.0", "features.1.conv.0", "features.2.conv.0"))
    assert "node_conv2d" not in overview  # the legend shows modules, not exporter numbers
    zoom = _run("inspect", str(folder), "--layer", "features.1.conv.0")
    assert "layer 1: features.1.conv.0 (node_conv2d_1)" in zoom
    assert "layer 2:" in _run("inspect", str(folder), "--layer", "features.2.conv")  # a unique part of a path
    assert _legend_labels(read_build(folder))[:3] == ["0: features.0", "1: features.1.conv.0", "2: features.2.conv.0"]
    page = html_report(read_build(folder))
    assert '"path":"features.1.conv.0"' in page and '"short":"features.2.conv.0"' in page


def test_colliding_module_paths_fall_back_to_node_names(tmp_path: Path) -> None:
    """Two layers recorded in one module (a module called twice) show their node names."""
    same = LAYERS[1][1]
    folder = _build(tmp_path, [LAYERS[0], (LAYERS[1][0], same), (LAYERS[2][0], same)])
    build = read_build(folder)
    assert build.layer_modules == ["features.0", "features.1.conv.0", "features.1.conv.0"]
    assert short_names(build.layer_names, modules=build.layer_modules) == ["features.0", "node_conv2d_1",
                                                                         "node_conv2d_2"]


def test_hostile_scopes_are_ignored_and_names_escaped(tmp_path: Path) -> None:
    """Malformed, huge or control-character scopes give no module; the builds match the model without
    scopes byte for byte, and a control character in a node name is escaped in the views."""
    hostile = [("node\x1b[2Ja", "['', 'fea\x1b[2Jtures', 'conv2d']"), ("n1", "[" + "'a', " * 5000 + "'b']"),
               ("n2", "['', 'features', 'conv")]
    folder = _build(tmp_path / "h", hostile)
    plain = _build(tmp_path / "p", [(name, None) for name, _ in hostile])
    assert (folder / "layout.json").read_bytes() == (plain / "layout.json").read_bytes()
    assert "module" not in json.loads((folder / "layout.json").read_text())["layers"][0]
    out = _run("inspect", str(folder))
    assert "\x1b" not in out and "node\\x1b[2Ja" in out


def test_diff_names_layers_by_their_module_paths(tmp_path: Path) -> None:
    a = _build(tmp_path / "a", LAYERS)
    b = tmp_path / "bb"
    compile_model(a.parent / "m.onnx", b, CompileOptions(w_bits=8))
    shown = _run("diff", str(a), str(b))
    assert all(p in shown for p in ("features.0", "features.1.conv.0", "features.2.conv.0"))
    assert "node_conv2d" not in shown
