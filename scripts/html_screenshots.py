"""Screenshots and figures of ``cimc inspect BUILD --html`` in headless Chromium, at real-model scale.

    python3 scripts/html_screenshots.py                  # compile the four builds, then shoot
    python3 scripts/html_screenshots.py --work /tmp/s    # reuse the builds already in /tmp/s

Builds (compiled with default options unless ``WORK/<name>.build`` exists): VGG9 and VGG16 from the
zoo (``cimc compile vgg9``), DenseNet-121 and MobileNetV2 of the real-model corpus (``tests/models``,
published 224×224 networks, random weights, legacy exporter as in ``scripts/real_models.py``). For
each build the script writes the HTML report, loads it in headless Chromium at 1,280 px wide and
reads back, from a small probe script appended to a copy of the page (its ``load`` handler writes a
JSON object into the DOM, read with ``--dump-dom``):

* ``scrollWidth``: ``document.scrollingElement.scrollWidth``; more than 1,280 means a sideways scroll;
* ``load ms``: the navigation's ``loadEventStart`` (ms since navigation start: parse, style, layout
  and the page's own script, file read included; Chromium's own start-up is not);
* ``layers``: the buttons of the layer list, ``macros``: the macro map cards;
* ``errors``: messages caught by ``window.onerror`` (installed before the page's script).

Screenshots (PNG, cropped to ``--height`` px, palette-quantized to stay small) go to ``docs/screenshots``:
``<name>-top.png`` (the top of the page) and ``<name>-highlight.png`` (one layer, ``MODELS``' third
field, highlighted by the page's own ``highlight()``: its list entry outlined, the other layers' cells
faded). ``docs/screenshots/README.md`` gets the table of figures.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CLI = [sys.executable, "-c", "import sys; from cimc.cli.main import main; sys.argv[0] = 'cimc'; main()"]
WIDTH = 1280

#: Written before the page's own script: catches its errors.
PROBE_HEAD = ("<script>window.__errors=[];window.addEventListener('error',e=>{window.__errors.push("
              "String(e.message))});</script>")
#: Appended at the end of the body: on ``load`` (after highlighting layer ``%(layer)d`` when it is
#: not -1, by the page's own ``highlight()``), the figures as JSON in ``<pre id=probe>``.
PROBE_TAIL = """<script>window.addEventListener('load',()=>{const nav=performance.getEntriesByType('navigation')[0];
const hl=%(layer)d;if(hl>=0&&typeof highlight==='function')highlight(hl);
const list=document.getElementById('layer-list'),on=document.querySelector('#layer-list button.on');
const se=document.scrollingElement,cards=[...document.querySelectorAll('section.card')];
const p=document.createElement('pre');p.id='probe';
p.textContent=JSON.stringify({scroll_width:se.scrollWidth,client_width:se.clientWidth,
load_ms:nav?nav.loadEventStart:performance.now(),layers:document.querySelectorAll('#layer-list button').length,
macros:cards.length,map_columns:cards.filter(c=>c.offsetTop===(cards[0]||c).offsetTop).length,
highlighted:document.querySelectorAll('.on').length,errors:window.__errors,
card_height:cards.length?cards[0].offsetHeight:0,
list_scroll:list?list.scrollTop:0,hl_visible:on&&list?on.offsetTop>=list.scrollTop&&
on.offsetTop+on.offsetHeight<=list.scrollTop+list.clientHeight:null});document.body.appendChild(p);});
</script>"""


def chromium() -> str | None:
    """The Chromium binary on PATH (``chromium``, ``chromium-browser``, ``google-chrome``), or None."""
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def chromium_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=60)
    return done.stdout.strip() or "unknown"


def probed(page: str, layer: int = -1) -> str:
    """``page`` with the error hook at the top of ``<head>`` and the probe before ``</body>``."""
    head = page.replace("<head>", "<head>" + PROBE_HEAD, 1)
    tail = PROBE_TAIL % {"layer": layer}
    return head.replace("</body>", tail + "</body>", 1)


def _flags(binary: str, height: int, scrollbars: bool = True) -> list[str]:
    """Headless Chromium at ``WIDTH × height``; with ``scrollbars`` the vertical one takes its
    width from the viewport, as in a desktop window."""
    return [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--window-size={WIDTH},{height}", *([] if scrollbars else ["--hide-scrollbars"])]


def measure(binary: str, page: Path, timeout: float = 120) -> dict[str, Any]:
    """The probe's figures for ``page`` (a probed HTML file), read from ``--dump-dom``."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([*_flags(binary, 2000), f"--user-data-dir={profile}", "--dump-dom",
                               page.resolve().as_uri()], capture_output=True, text=True, check=False, timeout=timeout)
    found = re.search(r"<pre id=\"probe\">(.*?)</pre>", done.stdout, re.S)
    if found is None:
        raise RuntimeError(f"no probe output from Chromium (rc {done.returncode}): {done.stderr[-500:]}")
    return dict(json.loads(html.unescape(found.group(1))))


def screenshot(binary: str, page: Path, png: Path, height: int, timeout: float = 120) -> None:
    """A ``WIDTH × height`` screenshot of ``page``, palette-quantized (256 colours) to stay small."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "shot.png"
        subprocess.run([*_flags(binary, height, False), f"--user-data-dir={profile}", f"--screenshot={raw}",
                        page.resolve().as_uri()], capture_output=True, check=True, timeout=timeout)
        with Image.open(raw) as image:
            image.convert("RGB").quantize(colors=256).save(png, optimize=True)


def _cimc(*args: str, timeout: float = 1800, cwd: Path | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    subprocess.run([*CLI, *args], check=True, env=env, timeout=timeout, stdout=subprocess.DEVNULL, cwd=cwd)


def _export_corpus(name: str, path: Path) -> None:
    """A published 224×224 corpus network (random weights), exported by the legacy exporter."""
    sys.path.insert(0, str(ROOT))
    from tests.models import build
    from tests.models.export import export

    model, x = build(name, small=False)
    export(model, x, path, "legacy")


#: name in the table, how to get the model (zoo name or corpus architecture), highlighted layer.
MODELS: dict[str, tuple[str, str, int]] = {
    "vgg9": ("zoo", "vgg9", 3),
    "vgg16": ("zoo", "vgg16", 5),
    "densenet121": ("corpus", "densenet121", 40),
    "mobilenet_v2": ("corpus", "mobilenet_v2", 20),
}


def ensure_build(name: str, work: Path) -> Path:
    """``WORK/<name>.build``, compiled (default options) unless it exists."""
    out = work / f"{name}.build"
    if (out / "manifest.json").is_file():
        return out
    kind, source, _ = MODELS[name]
    if kind == "corpus":
        onnx_path = work / f"{name}.onnx"
        if not onnx_path.is_file():
            _export_corpus(source, onnx_path)
        source = str(onnx_path)
    _cimc("compile", source, "-o", str(out))
    return out


def shoot(binary: str, name: str, build_dir: Path, work: Path, height: int) -> dict[str, Any]:
    """The HTML of ``build_dir``, its figures and its two screenshots under ``OUT``."""
    page = work / f"{name}.html"
    start = time.perf_counter()
    _cimc("inspect", build_dir.name, "--html", page.name, cwd=work)  # the page names the folder, not its path
    write_s = time.perf_counter() - start
    text = page.read_text(encoding="utf-8")
    plain, marked = work / f"{name}.probe.html", work / f"{name}.hl.html"
    plain.write_text(probed(text), encoding="utf-8")
    marked.write_text(probed(text, MODELS[name][2]), encoding="utf-8")
    runs = [measure(binary, plain) for _ in range(3)]
    figures = dict(runs[0])
    figures["load_ms"] = sorted(r["load_ms"] for r in runs)[1]  # median of 3
    figures["load_ms_all"] = [round(r["load_ms"]) for r in runs]
    figures["highlighted"] = measure(binary, marked)["highlighted"]
    figures.update(name=name, html_bytes=page.stat().st_size, html_write_s=round(write_s, 2))
    screenshot(binary, plain, OUT / f"{name}-top.png", height)
    screenshot(binary, marked, OUT / f"{name}-highlight.png", height)
    return figures


HEADER = ("| build | layers | macros | HTML bytes | load ms | scrollWidth | map cols | errors | highlighted "
          "| screenshots |")


def readme(version: str, machine: str, rows: list[dict[str, Any]]) -> str:
    """docs/screenshots/README.md: how the figures were taken, and the table."""
    lines = ["# The HTML report in headless Chromium", "",
             "Generated by `python3 scripts/html_screenshots.py` (the figures and the screenshots): each build's "
             "`cimc inspect BUILD --html` page loaded in headless Chromium, window 1,280 px wide "
             "(`--headless=new --window-size=1280,2000`; screenshots with `--hide-scrollbars`). `load ms` is the "
             "navigation's `loadEventStart` (median of 3 loads, all three in brackets), `scrollWidth` is "
             "`document.scrollingElement.scrollWidth`, the viewport's `clientWidth` in brackets (1,280 less the "
             "vertical scrollbar; equal: no sideways scroll), `map cols` the macro maps side by side, `layers` the "
             "layer list's entries, `macros` the macro map cards, `errors` the script errors caught by "
             "`window.onerror`, `highlighted` the elements outlined when the page's `highlight()` selects the layer "
             "shown in the second screenshot (its list button and its row of the CIM layers table). VGG9 and VGG16 "
             "come from the zoo (`cimc compile vgg9`); DenseNet-121 and MobileNetV2 are the real-model corpus's "
             "published 224×224 networks (`tests/models`, random weights, legacy exporter), compiled with default "
             "options.", "",
             f"Chromium: {version}. Machine: {machine}.", "", HEADER,
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        loads = ", ".join(str(v) for v in r["load_ms_all"])
        lines.append(f"| {r['name']} | {r['layers']} | {r['macros']} | {r['html_bytes']:,} | {r['load_ms']:,.0f} "
                     f"({loads}) | {r['scroll_width']:,} ({r['client_width']:,}) | {r['map_columns']} | "
                     f"{len(r['errors'])} | {r['highlighted']} | "
                     f"[top]({r['name']}-top.png), [layer highlighted]({r['name']}-highlight.png) |")
    lines += ["", "The pictures are cropped to the first screen (the top of the page; the second with one layer "
              "highlighted). The same probe runs on a small build in `tests/test_html_chromium.py` (skipped where "
              "no Chromium is installed).", "",
              "Load times swing with the machine's load (a 2-core machine shared with other jobs). One A/B "
              "measurement, VGG16's page loaded alternately 4 times each at a load average of about 29: with every "
              "macro card laid out at load, 1,292 / 970 / 824 / 1,018 ms; with `content-visibility:auto` on the "
              "cards (the maps below the fold are skipped until scrolled to, at their estimated height), "
              "448 / 550 / 669 / 580 ms; the page without its maps section, 297 / 142 / 246 / 290 ms.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the builds and pages (kept; default: a temporary one)")
    parser.add_argument("--only", action="append", choices=sorted(MODELS), help="these builds only")
    parser.add_argument("--height", type=int, default=1100, help="screenshot height in pixels")
    args = parser.parse_args(argv)
    binary = chromium()
    if binary is None:
        parser.error("no chromium binary on PATH (Debian: apt-get install chromium)")
    work = args.work or Path(tempfile.mkdtemp(prefix="cimc-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.only or list(MODELS):
        figures = shoot(binary, name, ensure_build(name, work), work, args.height)
        print(json.dumps(figures), flush=True)
        rows.append(figures)
    (work / "figures.json").write_text(json.dumps(rows, indent=1))
    if not args.only:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
        (OUT / "README.md").write_text(readme(chromium_version(binary), machine, rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
