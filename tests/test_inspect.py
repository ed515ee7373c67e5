"""``cimc inspect`` (text maps ≤ 100 columns, zooms, JSON) and the self-contained HTML report,
whose hover details are run in node.js and compared with ``describe_cell``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cimc.build.cell_map import describe_cell, owners
from cimc.build.reader import read_build
from cimc.cli.main import main
from cimc.views.html_report import SCRIPT, html_report
from cimc.views.text_map import majority
from tests.map_builds import build


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_majority_per_block() -> None:
    codes = np.array([[0, 0, -1, -1, 3],
                      [0, 1, -1, 2, 3]])
    # blocks of 2×2: {0,0,0,1} → 0; {-1,-1,-1,2} → 2 (used beats idle); {3,3} → 3
    assert majority(codes, 2, 2).tolist() == [[0, 2, 3]]
    assert majority(np.full((4, 4), -1), 2, 2).tolist() == [[-1, -1], [-1, -1]]


@pytest.mark.parametrize(("name", "options"), [("tiny_residual", {"map_fc": True}),
                                               ("digits_cnn", {"placement": "aligned"})])
def test_overview_fits_100_columns(name: str, options: dict[str, object]) -> None:
    folder = build(name, **options)
    code, out = _run("inspect", str(folder))
    assert code == 0, out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    b = read_build(folder)
    assert all(n in out for n in b.layer_names)
    strips = [line for line in lines if re.match(r"^\s+\d+ │", line)]
    assert len(strips) == b.num_macros
    usage = owners(b.layout).usage()
    assert [line.rsplit("│", 1)[1].strip() for line in strips] == [f"{u:.2%}" for u in usage]


def test_macro_zoom_map_matches_the_layout() -> None:
    """tiny_cnn uses bitlines 0…79 of macro 0: characters 0…19 are layers, 20…63 idle."""
    folder = build("tiny_cnn")
    code, out = _run("inspect", str(folder), "--macro", "0")
    assert code == 0
    rows = [line.split("│")[1] for line in out.splitlines() if re.match(r"^\s+\d+ │", line)]
    assert len(rows) == 16 and all(len(r) == 64 for r in rows)
    own = owners(read_build(folder).layout)
    used_chars = int(own.used[0].sum()) // 4
    assert all(set(r[used_chars:]) == {"."} for r in rows)
    assert set(rows[0][:used_chars]) <= set("ABbCc")
    assert "node_conv2d_2" in out and "wordlines" in out


def test_layer_zoom_lists_segments() -> None:
    folder = build("tiny_cnn")
    code, out = _run("inspect", str(folder), "--layer", "node_conv2d_2")
    assert code == 0
    assert "0–251" in out and "252–359" in out and "0–27" in out and "28–39" in out
    assert _run("inspect", str(folder), "--layer", "nope")[0] == 2
    assert _run("inspect", str(folder), "--macro", "3")[0] == 2


def test_inspect_json_and_files(tmp_path: Path) -> None:
    folder = build("tiny_residual", map_fc=True)
    code, out = _run("--json", "inspect", str(folder), "--html", str(tmp_path / "r.html"),
                     "--svg", str(tmp_path / "svg"))
    assert code == 0
    doc = json.loads(out)
    b = read_build(folder)
    assert doc["macros"] == b.num_macros and [x["name"] for x in doc["layers"]] == b.layer_names
    assert (tmp_path / "r.html").is_file() and (tmp_path / "svg" / "overview.svg").is_file()


def test_html_is_self_contained_with_tables_and_maps() -> None:
    b = read_build(build("tiny_residual", map_fc=True))
    page = html_report(b)
    assert "http" not in page and "<link" not in page and " src=" not in page
    for layer in b.report["layers"]:
        assert f"<td>{layer['params']:,}</td>" in page and f"{100 * layer['macro_usage']:.2f}%" in page
    assert page.count("<svg class='macro'") == b.num_macros
    data = json.loads(re.search(r"id='cimc-data'>(.*?)</script>", page, re.S)[1].replace("<\\/", "</"))
    assert [x["name"] for x in data["layers"]] == b.layer_names


@pytest.mark.skipif(shutil.which("node") is None, reason="node.js not installed")
@pytest.mark.parametrize(("name", "options"), [("tiny_residual", {"map_fc": True}), ("digits_cnn", {})])
def test_html_hover_details_match_describe_cell(tmp_path: Path, name: str, options: dict[str, object]) -> None:
    """Run the page's own ``cell()`` on sampled cells and compare with the Python decoder."""
    b = read_build(build(name, **options))
    page = html_report(b)
    data = re.search(r"id='cimc-data'>(.*?)</script>", page, re.S)[1].replace("<\\/", "</")
    own = owners(b.layout)
    rng = np.random.default_rng(0)
    used = np.argwhere(own.layer_grid() >= 0)
    cells = [tuple(int(v) for v in used[i]) for i in rng.choice(len(used), 250)]
    cells += [(int(rng.integers(own.shape[0])), int(rng.integers(own.wordlines)), int(rng.integers(own.shape[1])))
              for _ in range(100)]
    cell_fn = SCRIPT[SCRIPT.index("function cell"):SCRIPT.index("for(const svg")]
    js = (f"const D={data};{cell_fn}\nconst Q={json.dumps(cells)};"
          "console.log(JSON.stringify(Q.map(([m,w,b])=>cell(m,w,b))));")
    (tmp_path / "hover.js").write_text(js)
    got = json.loads(subprocess.run(["node", str(tmp_path / "hover.js")], capture_output=True, text=True,
                                    check=True).stdout)
    for (m, w, x), text in zip(cells, got, strict=True):
        want = describe_cell(b.layout, own, m, w, x)
        if want["idle"]:
            assert text == "idle"
            continue
        assert f"layer {want['layer_index']}: {want['layer']}" in text
        assert f"segment {want['segment']} " in text and f"output channel {want['out_channel']}\n" in text
        assert f"input channel {want['in_channel']}" in text
        assert f"kernel position ({want['kernel_pos'][0]}, {want['kernel_pos'][1]})" in text


@pytest.mark.torch  # the paper's zoo models are exported with torch
@pytest.mark.slow
def test_paper_model_views(tmp_path: Path) -> None:
    folder = build("vgg9")
    code, out = _run("inspect", str(folder), "--html", str(tmp_path / "vgg9.html"))
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 100
    b = read_build(folder)
    assert len([line for line in out.splitlines() if re.match(r"^\s+\d+ │", line)]) == b.num_macros == 151
    page = (tmp_path / "vgg9.html").read_text()
    assert page.count("<svg class='macro'") == 151 and "http" not in page


def test_views_of_a_build_without_cim_layers(tmp_path: Path) -> None:
    """A model whose only layer stays digital: 0 macros, and every view still works."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cimc.api import compile_model

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "mm.onnx")
    compile_model(tmp_path / "mm.onnx", tmp_path / "b")
    folder = str(tmp_path / "b")
    code, out = _run("inspect", folder, "--html", str(tmp_path / "r.html"), "--svg", str(tmp_path / "maps"))
    assert code == 0 and "0 CIM layers on 0 macros" in out
    assert (tmp_path / "maps" / "overview.svg").is_file() and (tmp_path / "r.html").is_file()
    assert _run("diff", folder, folder)[0] == 0


def test_layer_keys_never_repeat_up_to_676_layers() -> None:
    """Keys are base-26 numbers in A…Z: one letter up to 26 layers, two up to 676, all distinct."""
    from cimc.views.palette import key_width, symbol

    assert [key_width(n) for n in (1, 26, 27, 676, 677)] == [1, 1, 2, 2, 3]
    keys = [symbol(i, 0, 2) for i in range(676)]
    assert len(set(keys)) == 676 and keys[:2] == ["AA", "AB"] and keys[26] == "BA"
    assert symbol(27, 1, 2) == "bb" and symbol(25) == "Z"


def test_strip_of_32_layers_shows_two_letter_keys_within_64_characters() -> None:
    """32 layers of 4 bitlines each: one 2-letter block per layer, AA … BF, none repeated
    (with one-letter keys layers 0 and 26 both read 'A')."""
    from cimc.build.cell_map import Owners
    from cimc.views.text_map import macro_strips

    layer = np.repeat(np.arange(32), 4)[None, :].astype(np.int64)  # 128 bitlines
    zeros = np.zeros_like(layer)
    own = Owners(layer=layer, segment=zeros, out_channel=zeros, start=zeros, stop=zeros + 8, wordlines=8)
    strip = macro_strips(own)[0].plain.split("│")[1]
    assert len(strip) == 64
    keys = [strip[i:i + 2] for i in range(0, 64, 2)]
    assert keys[0] == "AA" and keys[26] == "BA" and keys[-1] == "BF" and len(set(keys)) == 32
