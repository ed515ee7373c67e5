"""A self-contained HTML report of a build: one file, no network at view time.

It holds the tables of ``report.md`` (per layer and total), the layers' geometry, an
overview of every macro (inline SVG thumbnails labelled with usage, and a stacked usage
bar per macro) and one inline SVG per macro, wordlines down and bitlines across. Each
SVG draws one rectangle per run of bitlines (``cell_map.runs``), so the file stays small
for hundreds of macros. A short inline script shows, for the cell under the pointer, the
layer, segment, output channel, input channel and kernel position, computed from the
row order ``r = row_start(s) + (w − w0)``, ``c = r // (kh·kw)``, ``(i, j) =
((r mod kh·kw) // kw, r mod kw)`` and ``in channel = g·C_g + c`` for group
``g = o // (Cout / G)``. A Gantt chart of ``schedule.json``'s timeline (one row per physical
macro, loads grey, compute phases in their layer's colour; inline SVG, up to
``GANTT_EVENTS`` bars) follows the report's timeline and energy lines.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from cimc.backend.report import COLUMNS, cell_text, timeline_notes
from cimc.build.cell_map import RUN_FIELDS, Owners, runs
from cimc.build.reader import BuildDir
from cimc.documents.parse import parse
from cimc.documents.report import Report
from cimc.documents.schedule import Schedule
from cimc.views.palette import IDLE, layer_color
from cimc.views.placement_map import mosaic_shape, usage_label

CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.total{font-weight:bold}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #333;vertical-align:middle}
svg.macro{border:1px solid #333;background:#fff;cursor:crosshair}
#tip{position:fixed;pointer-events:none;background:#fffff0;border:1px solid #888;padding:4px 8px;
font:12px monospace;display:none;white-space:pre;z-index:9}
details{margin:6px 0}summary{cursor:pointer}
"""

SCRIPT = """
const D=JSON.parse(document.getElementById('cimc-data').textContent);const tip=document.getElementById('tip');
function cell(m,w,b){for(const r of D.runs){if(r[0]!==m||b<r[1]||b>=r[2])continue;
if(w<r[6]||w>=r[7])break;const L=D.layers[r[3]],S=L.S||1,s=r[4],col=r[5]*S+(r[8]||0)+b-r[1];
const o=Math.floor(col/S),j=col%S,row=L.seg[s][0]+w-r[6];
const k=L.kernel[0]*L.kernel[1],c=Math.floor(row/k),p=row%k,g=Math.floor(o/(L.cout/L.groups));
return `layer ${r[3]}: ${L.name} (${L.op})\\nsegment ${s} (rows ${L.seg[s][0]}-${L.seg[s][1]-1})\\n`+
`output channel ${o}\\ninput channel ${g*(L.rows/k)+c}`+(L.groups>1?` (group ${g})`:'')+
`\\nkernel position (${Math.floor(p/L.kernel[1])}, ${p%L.kernel[1]})\\nrow ${row}`+
(S>1?`\\nweight digit ${j} of ${S} (${j===S-1?'signed, most significant':'unsigned'})`:'')}return 'idle';}
for(const svg of document.querySelectorAll('svg.macro')){const m=+svg.dataset.m;
svg.addEventListener('mousemove',e=>{const pt=svg.createSVGPoint();pt.x=e.clientX;pt.y=e.clientY;
const q=pt.matrixTransform(svg.getScreenCTM().inverse());const b=Math.floor(q.x),w=Math.floor(q.y);
tip.textContent=`macro ${m}, wordline ${w}, bitline ${b}\\n`+cell(m,w,b);tip.style.display='block';
tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+14)+'px';});
svg.addEventListener('mouseleave',()=>{tip.style.display='none';});}
function openHash(){const el=document.getElementById(location.hash.slice(1));
if(el&&el.tagName==='DETAILS')el.open=true;}
window.addEventListener('hashchange',openHash);openHash();
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(key: str, value: Any) -> str:
    if key == "macro_usage" and isinstance(value, (int, float)):
        return f"{100 * value:.2f}%"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _esc(value)


def _cell(key: str, row: dict[str, Any]) -> str:
    """Precision columns through ``report.cell_text``, figures through ``_fmt``."""
    return _esc(cell_text(key, row)) if key == "bits" else _fmt(key, row.get(key))


def _report_table(report: dict[str, Any] | None) -> str:
    if not report:
        return "<p>report.json is missing.</p>"
    head = "".join(f"<th>{_esc(h)}</th>" for _, h in COLUMNS)
    rows = ["<tr>" + "".join(f"<td>{_cell(k, layer)}</td>" for k, _ in COLUMNS) + "</tr>"
            for layer in report.get("layers", [])]
    totals = {**report.get("totals", {}), "name": "total", "partial_sums": report.get("totals", {}).get(
        "partial_sum_storage")}
    rows.append("<tr class=total>" + "".join(f"<td>{_cell(k, totals)}</td>" for k, _ in COLUMNS) + "</tr>")
    notes = "".join(f"<li>{_esc(n)}</li>" for n in report.get("notes", []))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table><ul>{notes}</ul>"


#: Bars of the inline Gantt chart at most (a longer timeline is described, not drawn).
GANTT_EVENTS = 20_000
GANTT_WIDTH = 1100


def _timeline_section(build: BuildDir) -> str:
    """The report's timeline and energy lines and an inline SVG Gantt chart of the timeline."""
    if build.report is None or build.schedule is None:
        return "<p>No timeline in this build.</p>"
    report = parse(Report, "report.json", build.report)
    tl = parse(Schedule, "schedule.json", build.schedule).timeline
    items = "".join(f"<li>{_esc(line)}</li>" for line in timeline_notes(report.latency, report.energy))
    bars = [(ld.slot, ld.start, ld.end, "#9a9a9a") for ld in tl.loads]
    bars += [(s, ph.start, ph.end, layer_color(ph.layer)) for ph in tl.phases for s in ph.slots]
    if len(bars) > GANTT_EVENTS:
        return f"<ul>{items}</ul><p>{len(bars):,} bars: too many to draw here (cimc maps --timeline).</p>"
    end = max([b[2] for b in bars], default=1) or 1
    row = 14 if tl.slots <= 40 else 4
    scale = GANTT_WIDTH / end
    rects = "".join(f"<rect x='{start * scale:.1f}' y='{slot * row}' width='{max((stop - start) * scale, 0.5):.1f}' "
                    f"height='{row - 1}' fill='{color}'/>" for slot, start, stop, color in bars)
    svg = (f"<svg class=gantt width='{GANTT_WIDTH}' height='{tl.slots * row}' "
           f"viewBox='0 0 {GANTT_WIDTH} {tl.slots * row}'>{rects}</svg>")
    return (f"<ul>{items}</ul><p>Physical macros top to bottom (0 … {tl.slots - 1}), cycles 0 … {end:,} left to "
            f"right; grey = load, colour = the layer computing.</p>{svg}")


def _layers_table(build: BuildDir) -> str:
    rows = []
    for i, layer in enumerate(build.layout.layers):
        macros = layer.macros
        span = f"{macros[0]}–{macros[-1]}" if macros else "–"
        rows.append(f"<tr><td><span class=sw style='background:{layer_color(i)}'></span> {i}: {_esc(layer.node)}"
                    f"</td><td>{_esc(layer.op)}</td><td>{layer.kernel[0]}×{layer.kernel[1]}</td>"
                    f"<td>{layer.groups}</td><td>{layer.rows:,}</td><td>{layer.cout:,}</td>"
                    f"<td>{len(layer.segments)}</td><td>{layer.columns:,}</td><td>{span}</td>"
                    f"<td>{_esc(build.slicing_notes.get(i, '–'))}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("layer", "op", "kernel", "groups", "rows/group", "Cout",
                                             "segments", "bitlines", "macros", "bit-slicing"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _rects(r: dict[str, np.ndarray], index: np.ndarray) -> str:
    return "".join(
        f"<rect x='{b0}' y='{w0}' width='{b1 - b0}' height='{w1 - w0}' fill='{layer_color(la, s)}'/>"
        for b0, b1, la, s, w0, w1 in zip(*(r[k][index].tolist() for k in (
            "bitline_start", "bitline_stop", "layer", "segment", "wordline_start", "wordline_stop")), strict=True))


def _overview(build: BuildDir, own: Owners, r: dict[str, np.ndarray]) -> str:
    """Macro thumbnails (aspect WL:BL kept) linking to their maps, labelled ``m: usage``."""
    count, bl, wl = own.shape[0], own.shape[1], own.wordlines
    rows, cols = mosaic_shape(count)
    tw = 96 if count <= 64 else 64
    th = max(8, round(tw * wl / bl))
    usage = own.usage()
    tiles = []
    for m in range(count):
        y, x = divmod(m, cols)
        tiles.append(f"<a href='#macro-{m}'><g transform='translate({1 + x * (tw + 22)},{1 + y * (th + 22)})'>"
                     f"<title>macro {m}: {usage[m]:.2%} used</title><rect width='{tw}' height='{th}' fill='{IDLE}'/>"
                     f"<g transform='scale({tw / bl},{th / wl})'>{_rects(r, r['macro'] == m)}</g>"
                     f"<rect width='{tw}' height='{th}' fill='none' stroke='#333'/>"
                     f"<text x='0' y='{th + 14}' font-size='12'>{_esc(usage_label(m, float(usage[m])))}</text></g></a>")
    return f"<svg width='{cols * (tw + 22) + 2}' height='{rows * (th + 22) + 2}'>{''.join(tiles)}</svg>"


def _usage_bars(build: BuildDir, own: Owners) -> str:
    """Stacked bars: each macro's share of cells per layer, with a 0–100 % scale."""
    share = own.cells_by_layer(len(build.layer_names)) / float(own.wordlines * own.shape[1])
    width, height, left = max(2.0, min(80.0, 960.0 / max(own.shape[0], 1))), 120, 40
    top = np.cumsum(share, axis=1)
    cells = zip(*np.nonzero(share), strict=True)
    bars = [f"<rect x='{left + m * width:.2f}' y='{height * (1 - top[m, i]):.2f}' width='{width:.2f}' "
            f"height='{height * share[m, i]:.2f}' fill='{layer_color(int(i))}'><title>macro {m}: "
            f"{_esc(build.layer_names[i])} {share[m, i]:.2%}</title></rect>" for m, i in cells]
    right = left + own.shape[0] * width
    axis = (f"<rect x='{left}' width='{right - left:.2f}' height='{height}' fill='none' stroke='#999'/>"
            f"<text x='{left - 4}' y='10' font-size='11' text-anchor='end'>100%</text>"
            f"<text x='{left - 4}' y='{height}' font-size='11' text-anchor='end'>0%</text>"
            f"<text x='{left}' y='{height + 14}' font-size='11'>0</text>"
            f"<text x='{(left + right) / 2:.2f}' y='{height + 14}' font-size='11' text-anchor='middle'>macro</text>"
            f"<text x='{right:.2f}' y='{height + 14}' font-size='11' text-anchor='end'>{own.shape[0] - 1}</text>")
    return f"<svg width='{right + 2:.0f}' height='{height + 18}'>{''.join(bars)}{axis}</svg>"


def _macro_section(build: BuildDir, own: Owners, r: dict[str, np.ndarray], m: int) -> str:
    bl, wl = own.shape[1], own.wordlines
    index = r["macro"] == m
    names = build.layer_names
    rows = "".join(
        f"<tr><td><span class=sw style='background:{layer_color(la, s)}'></span> {_esc(names[la])}</td><td>{s}</td>"
        f"<td>{o}–{o + b1 - b0 - 1}</td><td>{b0}–{b1 - 1}</td><td>{w0}–{w1 - 1}</td></tr>"
        for b0, b1, la, s, o, w0, w1 in zip(*(r[k][index].tolist() for k in (
            "bitline_start", "bitline_stop", "layer", "segment", "out_channel", "wordline_start", "wordline_stop")),
            strict=True))
    svg = (f"<svg class='macro' data-m='{m}' viewBox='0 0 {bl} {wl}' width='512' height='{512 * wl // bl}' "
           f"preserveAspectRatio='none'><rect width='{bl}' height='{wl}' fill='{IDLE}'/>"
           f"<g stroke='#222' stroke-width='0.6' vector-effect='non-scaling-stroke'>{_rects(r, index)}</g></svg>")
    head = "<tr><th>layer</th><th>segment</th><th>output channels</th><th>bitlines</th><th>wordlines</th></tr>"
    return (f"<details id='macro-{m}'{' open' if m < 4 else ''}><summary>macro {m}: "
            f"{float(own.usage()[m]):.2%} used</summary>{svg}<table>{head}{rows}</table></details>")


def _data(build: BuildDir, r: dict[str, np.ndarray]) -> str:
    layers = [{"name": x.node, "op": x.op, "kernel": x.kernel, "rows": x.rows, "cout": x.cout,
               "groups": x.groups, "seg": [[s.row_start, s.row_stop] for s in x.segments], "S": x.w_slices}
              for x in build.layout.layers]
    table = np.stack([r[k] for k in RUN_FIELDS], axis=1).tolist() if r["macro"].size else []
    text = json.dumps({"layers": layers, "runs": table}, separators=(",", ":"))
    return text.replace("</", "<\\/")


def html_report(build: BuildDir) -> str:
    """The whole report as one HTML string."""
    own = build.owners
    r = runs(own)
    macro, title = build.macro, _esc(f"cimc build: {build.name}")
    spec = (f"{macro.name}: {macro.wordlines}×{macro.bitlines} cells of {macro.cell_bits} bits, {macro.adcs} ADCs "
            f"of {macro.adc_bits} bits, {macro.load_cycles} cycles per load")
    sections = "".join(_macro_section(build, own, r, m) for m in range(own.shape[0]))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style></head>"
            f"<body><h1>{title}</h1><p>Macro {_esc(spec)}. Build folder <code>{_esc(build.path)}</code>.</p>"
            f"<h2>Report</h2>{_report_table(build.report)}<h2>Timeline</h2>{_timeline_section(build)}"
            f"<h2>CIM layers</h2>{_layers_table(build)}"
            f"<h2>Macros</h2><p>Each tile is one macro (wordlines down, bitlines across); colour = layer, lighter ="
            f" odd segment, white = idle. Click a tile for its map; hover a map for the cell's details.</p>"
            f"{_overview(build, own, r)}<h3>Usage per macro, by layer</h3>{_usage_bars(build, own)}"
            f"<h2>Macro maps</h2>{sections}<div id=tip></div>"
            f"<script type='application/json' id='cimc-data'>{_data(build, r)}</script>"
            f"<script>{SCRIPT}</script></body></html>\n")


def write_html(build: BuildDir, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_report(build), encoding="utf-8")
    return out
