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

from cimc.build.cell_map import describe_cell, owners, runs
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
    widths = [float(w) for w in re.findall(r"<svg width='([\d.]+)'", page)]
    assert max(widths) <= 1240, "no picture wider than the page (no sideways scroll at 1,280 px)"


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


def test_html_puts_pictures_first_and_never_scrolls_sideways() -> None:
    """Layers, macros and maps come before the long tables; the page is at most 1,240 px wide,
    every table scrolls in its own box and every SVG scales down (it has a viewBox)."""
    b = read_build(build("tiny_residual", map_fc=True))
    page = html_report(b)
    order = [page.index(f"<h2 id={name}>") for name in ("layers", "macros", "maps", "report", "geometry")]
    assert order == sorted(order)
    width = int(re.search(r"body\{[^}]*max-width:(\d+)px", page)[1])  # type: ignore[index]
    assert width <= 1280 and "svg{max-width:100%;height:auto}" in page
    body = page.split("<script")[0]
    assert body.count("<table") == body.count("<div class=scroll><table") == 2  # report, geometry
    assert body.count("<div class=scroll></div>") == b.num_macros  # runs tables: written when opened
    outer = re.findall(r"<svg (?!class='macro')[^>]*>", page)
    assert outer and all("viewBox=" in tag or "width='0'" in tag for tag in outer)
    ticks = re.search(r"<g id=ticks>(.*?)</defs>", page, re.S)[1]  # type: ignore[index]
    bl = b.layout.macro.bitlines
    assert f">{bl}</text>" in ticks and ">bitline</text>" in ticks and ">wordline</text>" in ticks
    assert page.count("<use href='#ticks'/>") == b.num_macros


def test_html_layer_list_and_highlight_classes() -> None:
    """A search box, one button per layer; every rectangle of a layer's cells or bars carries
    the class ``l{ℓ}`` the highlight rule selects: in the thumbnails and the maps once per run."""
    from collections import Counter

    b = read_build(build("digits_cnn", placement="aligned"))
    page = html_report(b)
    assert "<input id=layer-search type=search" in page
    buttons = re.findall(r"<button type=button data-layer='(\d+)'", page)
    assert buttons == [str(i) for i in range(len(b.layer_names))]
    maps = re.findall(r"<svg class='macro'.*?</svg>", page, re.S)
    got = Counter(int(x) for svg in maps for x in re.findall(r"<rect class='l(\d+)'", svg))
    want = Counter(runs(b.owners)["layer"].tolist())
    assert got == want
    bars = re.findall(r"class='l(\d+)' fill='[^']*'><title>macro", page)
    assert Counter(int(x) for x in bars) == Counter(np.nonzero(b.owners.cells_by_layer(len(b.layer_names)))[1].tolist())


@pytest.mark.skipif(shutil.which("node") is None, reason="node.js not installed")
def test_html_search_and_click_highlight_in_node(tmp_path: Path) -> None:
    """The page's script on a stub DOM: typing filters the layer buttons, Enter and a click
    on a layer's rectangle or button highlight it (one CSS rule fading the other layers, the
    'on' class on its list entries), a second click clears it; a macro's runs table, written
    when its fold opens, lists its runs in order, names escaped."""
    b = read_build(build("tiny_residual", map_fc=True))
    page = html_report(b)
    data = re.search(r"id='cimc-data'>(.*?)</script>", page, re.S)[1].replace("<\\/", "</")  # type: ignore[index]
    stub = """
class El{constructor(attrs){this.attrs=attrs||{};this.dataset={};this.cls=new Set();this.textContent='';this.h={};
 this.classList={toggle:(c,on)=>on?this.cls.add(c):this.cls.delete(c)};this.value='';}
 getAttribute(k){return this.attrs[k]??null;} addEventListener(k,f){this.h[k]=f;}
 closest(sel){if(sel==='[data-layer]')return this.dataset.layer!==undefined?this:null;
  if(sel==='rect')return this.attrs.rect?this:null;return null;}}
const byId={};for(const id of ['tip','hl','hl-note','layer-search'])byId[id]=new El();
const buttons=D.layers.map((L,i)=>{const e=new El();e.dataset.layer=String(i);return e;});
const docHandlers={};
globalThis.document={getElementById:id=>id==='cimc-data'?{textContent:JSON.stringify(D)}:byId[id],
 querySelectorAll:sel=>sel==='#layer-list button'||sel==='[data-layer]'?buttons:[],
 addEventListener:(k,f)=>{docHandlers[k]=f;}};
globalThis.window={addEventListener(){}};
"""
    script = re.search(r"<script>(.*?)</script>", page, re.S)[1]  # type: ignore[index]
    script = script.replace("const D=JSON.parse(document.getElementById('cimc-data').textContent);", "")
    drive = """
const out={};const box=byId['layer-search'];
box.value='conv';box.h.input();out.shown=buttons.filter(b=>!b.cls.has('hidden')).length;
box.value='';box.h.input();out.all=buttons.filter(b=>!b.cls.has('hidden')).length;
docHandlers.click({target:new El({rect:true,class:'l2'})});out.css=byId.hl.textContent;
out.on=buttons.filter(b=>b.cls.has('on')).map(b=>+b.dataset.layer);out.note=byId['hl-note'].textContent;
docHandlers.click({target:buttons[2]});out.cleared=byId.hl.textContent;
box.value='1';box.h.keydown({key:'Enter'});out.enter=byId.hl.textContent;
out.table=runsTable(0);out.esc=esc("<b a='1'>&");
console.log(JSON.stringify(out));
"""
    (tmp_path / "page.js").write_text(f"const D={data};{stub}{script}{drive}")
    got = json.loads(subprocess.run(["node", str(tmp_path / "page.js")], capture_output=True, text=True,
                                    check=True).stdout)
    names = b.layer_names
    assert got["shown"] == sum("conv" in n.lower() or "conv" in x.op.lower() for n, x in
                               zip(names, b.layout.layers, strict=True))
    assert got["all"] == len(names)
    assert "rect.l2{fill-opacity:1" in got["css"] and 'rect[class^="l"]{fill-opacity:.12}' in got["css"]
    assert got["on"] == [2] and names[2] in got["note"]
    assert got["cleared"] == "" and "rect.l1{" in got["enter"]
    r = runs(b.owners)
    mine = np.flatnonzero(r["macro"] == 0)
    row = r"<tr data-layer='(\d+)'><td>.*?</td><td>(\d+)</td><td>[^<]*</td><td>(\d+)–(\d+)</td>"
    rows = re.findall(row, got["table"])
    assert [tuple(int(v) for v in row) for row in rows] == [
        (int(r["layer"][i]), int(r["segment"][i]), int(r["bitline_start"][i]), int(r["bitline_stop"][i]) - 1)
        for i in mine]
    assert got["esc"] == "&#60;b a=&#39;1&#39;&#62;&#38;"


def test_html_usage_bars_stay_inside_their_frame() -> None:
    """The usage chart's frame starts below the SVG's top edge (its stroke and the 100 % label
    were clipped at y = 0), and every bar lies inside the frame: a full macro reaches its top."""
    b = read_build(build("digits_cnn", placement="aligned"))
    svg = re.search(r"<svg class=usage [^>]*viewBox='0 0 [\d.]+ ([\d.]+)'>(.*?)</svg>", html_report(b), re.S)
    assert svg is not None
    frame = re.search(r"<rect x='[\d.]+' y='([\d.]+)' width='[\d.]+' height='([\d.]+)' fill='none'", svg[2])
    assert frame is not None
    top, bottom = float(frame[1]), float(frame[1]) + float(frame[2])
    assert top > 0 and bottom < float(svg[1])
    bars = [(float(y), float(h)) for y, h in re.findall(r"<rect x='[\d.]+' y='([\d.]+)' width='[\d.]+' "
                                                         r"height='([\d.]+)' class='l", svg[2])]
    assert bars and all(top - 1e-6 <= y and y + h <= bottom + 0.01 for y, h in bars)
    label = re.search(r"<text x='[\d.]+' y='([\d.]+)'[^>]*>100%</text>", svg[2])
    assert label is not None and float(label[1]) >= 11 * 0.8  # the label's cap height fits above y = 0
