"""A self-contained HTML report of a build: one file, no network at view time.

Pictures first, tables last: a searchable list of every layer (colour swatch, index, short
name; the full name, op and macros on hover), an overview of every macro (inline SVG
thumbnails labelled with usage, and a stacked usage bar per macro), one inline SVG per macro
(wordlines down, bitlines across, ticks every ``size/8`` lines) in a grid of cards, then the
tables of ``report.md`` (per layer and total) and the layers' geometry, in boxes that scroll
on their own so the page never scrolls sideways (``max-width`` 1,240 px, SVGs scale down).
Each SVG draws one rectangle per run of bitlines (``cell_map.runs``) with the class ``l{ℓ}``
of its layer, so the file stays small for hundreds of macros, and a click on a layer (list,
table row, bar or map cell) highlights its cells everywhere by one generated CSS rule
(``layerCss``): the other layers' rectangles fade, and the layer's entry scrolls into view inside
the list (``reveal``; the list scrolls, not the page). A short inline script shows, for the cell
under the pointer, the layer, segment, output channel, input channel and kernel position, computed from the
row order ``r = row_start(s) + (w − w0)``, ``c = r // (kh·kw)``, ``(i, j) =
((r mod kh·kw) // kw, r mod kw)`` and ``in channel = g·C_g + c`` for group
``g = o // (Cout / G)``. A Gantt chart of ``schedule.json``'s timeline (one row per physical
macro, loads grey, compute phases in their layer's colour; inline SVG, up to
``GANTT_EVENTS`` bars) follows the report's timeline and energy lines. A build with a weight pool
gets a "Weight pool" section: the pool's bitlines and each pooled layer's index table as inline
PNGs (``cimc.views.pool_map``).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from cimc.backend.pool_file import FILE as POOL_FILE
from cimc.backend.report import COLUMNS, cell_text, timeline_notes
from cimc.build.cell_map import RUN_FIELDS, Owners, runs
from cimc.build.reader import BuildDir
from cimc.documents.parse import parse
from cimc.documents.report import Report
from cimc.documents.schedule import Schedule
from cimc.views.names import full_label, module_path, short_names
from cimc.views.palette import DARKEN, IDLE, colors_repeat, hatch_lines, layer_color, swatch_css
from cimc.views.placement_map import mosaic_shape, usage_label
from cimc.views.pool_map import index_canvas, png_bytes, pool_canvas, read_pool
from cimc.views.raster import Canvas

#: Page width (CSS px) and side padding; a macro map card's narrowest column and the grid's gap:
#: three cards side by side in the page's 1,208 px of content (``MAP_COLUMNS``), the maps scaled down a little.
PAGE_WIDTH, PAGE_PADDING, CARD_MIN, CARD_GAP = 1240, 16, 360, 12
MAP_COLUMNS = (PAGE_WIDTH - 2 * PAGE_PADDING + CARD_GAP) // (CARD_MIN + CARD_GAP)

CSS = Template("""
*{box-sizing:border-box}
body{font:14px system-ui,sans-serif;margin:24px auto;padding:0 ${pad}px;color:#222;max-width:${width}px}
svg{max-width:100%;height:auto}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.total{font-weight:bold}
.scroll{overflow-x:auto;max-width:100%}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #333;vertical-align:middle}
svg.macro{background:#fff;cursor:crosshair}
#tip{position:fixed;pointer-events:none;background:#fffff0;border:1px solid #888;padding:4px 8px;
font:12px monospace;display:none;white-space:pre;z-index:9}
details{margin:6px 0}summary{cursor:pointer}
#layer-search{width:100%;max-width:420px;padding:4px 8px;font:inherit}
#layer-list{position:relative;display:flex;flex-wrap:wrap;gap:4px;max-height:220px;overflow-y:auto;margin:8px 0;
padding:4px;border:1px solid #ddd}
#layer-list button{font:12px system-ui,sans-serif;border:1px solid #bbb;background:#fafafa;border-radius:3px;
padding:1px 6px;cursor:pointer;white-space:nowrap}
#layer-list button.on,tr.on{outline:2px solid #000;background:#ffe}
#layer-list button.hidden{display:none}
tr[data-layer]{cursor:pointer}
.maps{display:grid;grid-template-columns:repeat(auto-fill,minmax(${card}px,1fr));gap:${gap}px}
.card{border:1px solid #ddd;padding:6px;content-visibility:auto;contain-intrinsic-size:auto var(--card-h,420px)}
.card h3{font-size:14px;margin:0 0 4px}
img.pool{image-rendering:pixelated;max-width:none}
""").substitute(pad=PAGE_PADDING, width=PAGE_WIDTH, card=CARD_MIN, gap=CARD_GAP)

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
function layerCss(i){return i<0?'':`svg rect[class^="l"]{fill-opacity:.12}svg rect.l${i}{fill-opacity:1;`+
`stroke:#000;stroke-width:1px;vector-effect:non-scaling-stroke}`;}
function matches(q){q=q.trim().toLowerCase();return D.layers.map((L,i)=>q===''||String(i)===q||
L.name.toLowerCase().includes(q)||L.path.toLowerCase().includes(q)||L.op.toLowerCase().includes(q));}
let current=-1;const hlStyle=document.getElementById('hl');
function highlight(i){current=current===i?-1:i;hlStyle.textContent=layerCss(current);
for(const el of document.querySelectorAll('[data-layer]'))el.classList.toggle('on',+el.dataset.layer===current);
document.getElementById('hl-note').textContent=current<0?'':`highlighted: layer ${current}: `+
`${D.layers[current].name} (${D.layers[current].op}); click it again to clear`;reveal(current);}
function reveal(i){const list=document.getElementById('layer-list');
const b=list&&list.querySelector(`button[data-layer='${i}']`);if(!b)return;
const top=b.offsetTop,bottom=top+b.offsetHeight;
if(top<list.scrollTop||bottom>list.scrollTop+list.clientHeight)list.scrollTop=top-(list.clientHeight-b.offsetHeight)/2;}
document.addEventListener('click',e=>{const t=e.target.closest('[data-layer]');
if(t){highlight(+t.dataset.layer);return;}const r=e.target.closest('rect');const k=r&&r.getAttribute('class');
if(k&&/^l\\d+$/.test(k))highlight(+k.slice(1));});
function esc(s){return String(s).replace(/[&<>"']/g,c=>`&#${c.charCodeAt(0)};`);}
function runsTable(m){const rows=D.runs.filter(r=>r[0]===m).map(r=>{const L=D.layers[r[3]];
return `<tr data-layer='${r[3]}'><td><span class=sw style='background:${L.sw[r[4]%2]}'></span> ${r[3]}: `+
`${esc(L.short)}</td><td>${r[4]}</td><td>${r[5]}–${r[5]+r[2]-r[1]-1}</td><td>${r[1]}–${r[2]-1}</td>`+
`<td>${r[6]}–${r[7]-1}</td></tr>`;});return '<table><tr><th>layer</th><th>segment</th><th>output channels</th>'+
`<th>bitlines</th><th>wordlines</th></tr>${rows.join('')}</table>`;}
for(const d of document.querySelectorAll('details[data-m]'))d.addEventListener('toggle',()=>{
const box=d.querySelector('div');if(d.open&&!box.firstChild)box.innerHTML=runsTable(+d.dataset.m);});
const search=document.getElementById('layer-search');
search.addEventListener('input',()=>{const ok=matches(search.value);
for(const b of document.querySelectorAll('#layer-list button'))b.classList.toggle('hidden',!ok[+b.dataset.layer]);});
search.addEventListener('keydown',e=>{if(e.key!=='Enter')return;const i=matches(search.value).indexOf(true);
if(i>=0&&i!==current)highlight(i);});
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
    return f"<div class=scroll><table><tr>{head}</tr>{''.join(rows)}</table></div><ul>{notes}</ul>"


#: Bars of the inline Gantt chart at most (a longer timeline is described, not drawn).
GANTT_EVENTS = 20_000
GANTT_WIDTH = 1100


def _timeline_section(build: BuildDir) -> str:
    """The report's timeline and energy lines and an inline SVG Gantt chart of the timeline."""
    if build.report is None or build.schedule is None:
        return "<p>No timeline in this build.</p>"
    report = parse(Report, "report.json", build.report)
    tl = parse(Schedule, "schedule.json", build.schedule).timeline
    items = "".join(f"<li>{_esc(line)}</li>" for line in timeline_notes(report.latency, report.energy, report.system))
    bars = [(ld.slot, ld.start, ld.end, "#9a9a9a", "") for ld in tl.loads]
    bars += [(s, ph.start, ph.end, layer_color(ph.layer), f"class='l{ph.layer}' ") for ph in tl.phases
             for s in ph.slots]  # a layer's phases take part in its highlight
    if len(bars) > GANTT_EVENTS:
        return f"<ul>{items}</ul><p>{len(bars):,} bars: too many to draw here (cimc maps --timeline).</p>"
    end = max([b[2] for b in bars], default=1) or 1
    row = 14 if tl.slots <= 40 else 4
    scale = GANTT_WIDTH / end
    rects = "".join(f"<rect {cls}x='{start * scale:.1f}' y='{slot * row}' "
                    f"width='{max((stop - start) * scale, 0.5):.1f}' height='{row - 1}' fill='{color}'/>"
                    for slot, start, stop, color, cls in bars)
    svg = (f"<svg class=gantt width='{GANTT_WIDTH}' height='{tl.slots * row}' "
           f"viewBox='0 0 {GANTT_WIDTH} {tl.slots * row}'>{rects}</svg>")
    return (f"<ul>{items}</ul><p>Physical macros top to bottom (0 … {tl.slots - 1}), cycles 0 … {end:,} left to "
            f"right; grey = load, colour = the layer computing.</p>{svg}")


def _layers_table(build: BuildDir) -> str:
    rows = []
    for i, layer in enumerate(build.layout.layers):
        macros = layer.macros
        span = f"{macros[0]}–{macros[-1]}" if macros else "–"
        rows.append(f"<tr data-layer='{i}'><td><span class=sw style='background:{swatch_css(i)}'></span> "
                    f"{i}: {_esc(full_label(layer.node, layer.module))}"
                    f"</td><td>{_esc(layer.op)}</td><td>{layer.kernel[0]}×{layer.kernel[1]}</td>"
                    f"<td>{layer.groups}</td><td>{layer.rows:,}</td><td>{layer.cout:,}</td>"
                    f"<td>{len(layer.segments)}</td><td>{layer.columns:,}</td><td>{span}</td>"
                    f"<td>{_esc(build.slicing_notes.get(i, '–'))}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("layer", "op", "kernel", "groups", "rows/group", "Cout",
                                             "segments", "bitlines", "macros", "bit-slicing"))
    return f"<div class=scroll><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _layer_list(build: BuildDir) -> str:
    """The search box and one button per layer (swatch, index, short name; full name on hover)."""
    names = short_names(build.layer_names, 28, modules=build.layer_modules)
    buttons = []
    for i, layer in enumerate(build.layout.layers):
        macros = layer.macros
        where = f"macros {macros[0]}–{macros[-1]}" if macros else "no macro"
        title = _esc(full_label(layer.node, layer.module))
        buttons.append(f"<button type=button data-layer='{i}' title='{title} ({_esc(layer.op)}), {where}'>"
                       f"<span class=sw style='background:{swatch_css(i)}'></span> {i}: {_esc(names[i])}</button>")
    return ("<input id=layer-search type=search placeholder='find a layer: name, op or index (Enter highlights)' "
            f"aria-label='find a layer'><div id=layer-list>{''.join(buttons)}</div><p id=hl-note></p>")


def _rects(r: dict[str, np.ndarray], index: np.ndarray) -> str:
    """One rect per run in its layer's colour, and over it the layer's hatch (``_hatched``)."""
    return "".join(
        _hatched(la, f"class='l{la}' x='{b0}' y='{w0}' width='{b1 - b0}' height='{w1 - w0}'", layer_color(la, s))
        for b0, b1, la, s, w0, w1 in zip(*(r[k][index].tolist() for k in (
            "bitline_start", "bitline_stop", "layer", "segment", "wordline_start", "wordline_stop")), strict=True))


#: The ids of the hatch patterns (``_hatch_defs``) by line direction (``palette.hatch_lines``).
HATCH_IDS = {"/": "hatch-f", "\\": "hatch-b"}


def _hatched(layer: int, attrs: str, fill: str, title: str = "") -> str:
    """A rect of ``layer`` with ``attrs`` (its box and class ``l{layer}``) filled ``fill`` (with a
    hover ``title``), then one rect per hatch line direction of the layer (palette's scheme, past 20
    layers) with the same attributes, filled with that pattern: so a highlight fades or outlines
    them together, and a click on either picks the layer."""
    rects = [f"<rect {attrs} fill='{fill}'" + (f"><title>{title}</title></rect>" if title else "/>")]
    rects += [f"<rect {attrs} fill='url(#{HATCH_IDS[d]})' stroke='none'/>" for d in hatch_lines(layer)]
    return "".join(rects)


def _hatch_defs(own: Owners) -> str:
    """The hatch patterns: lines of black at opacity ``DARKEN`` every ``P = max(BL, WL) / 40``
    cells (user units of the maps), a third of ``P`` wide, turned 45° (``/``) or −45° (``\\``)."""
    period = max(2.0, max(own.shape[1], own.wordlines) / 40)
    defs = "".join(f"<pattern id='{HATCH_IDS[d]}' patternUnits='userSpaceOnUse' width='{period:g}' "
                   f"height='{period:g}' patternTransform='rotate({45 if d == '/' else -45})'>"
                   f"<rect width='{period / 3:.3g}' height='{period:g}' fill='#000' fill-opacity='{DARKEN}'/></pattern>"
                   for d in HATCH_IDS)
    return f"<svg width='0' height='0' style='position:absolute'><defs>{defs}</defs></svg>"


def _overview(build: BuildDir, own: Owners, r: dict[str, np.ndarray]) -> str:
    """Macro thumbnails (aspect WL:BL kept) linking to their maps, labelled ``m: usage``, in as
    many columns as fit 1,200 px (so the 12 px labels are not scaled down)."""
    count, bl, wl = own.shape[0], own.shape[1], own.wordlines
    tw = 96 if count <= 64 else 64
    cols = max(1, min(mosaic_shape(count)[1], 1200 // (tw + 22)))
    rows = -(-count // cols)
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
    width, height = cols * (tw + 22) + 2, rows * (th + 22) + 2
    return f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}'>{''.join(tiles)}</svg>"


def _usage_bars(build: BuildDir, own: Owners) -> str:
    """Stacked bars: each macro's share of cells per layer, with a 0–100 % scale; the frame starts
    ``top`` px down so that its top edge and the 100 % label are not clipped."""
    share = own.cells_by_layer(len(build.layer_names)) / float(own.wordlines * own.shape[1])
    width, height, left, top = max(2.0, min(80.0, 960.0 / max(own.shape[0], 1))), 120, 40, 6
    stack = np.cumsum(share, axis=1)
    cells = zip(*np.nonzero(share), strict=True)
    bars = [_hatched(int(i), f"x='{left + m * width:.2f}' y='{top + height * (1 - stack[m, i]):.2f}' "
                     f"width='{width:.2f}' height='{height * share[m, i]:.2f}' class='l{i}'", layer_color(int(i)),
                     f"macro {m}: {_esc(build.layer_names[i])} {share[m, i]:.2%}") for m, i in cells]
    right, bottom = left + own.shape[0] * width, top + height
    axis = (f"<rect x='{left}' y='{top}' width='{right - left:.2f}' height='{height}' fill='none' stroke='#999'/>"
            f"<text x='{left - 4}' y='{top + 4}' font-size='11' text-anchor='end'>100%</text>"
            f"<text x='{left - 4}' y='{bottom + 4}' font-size='11' text-anchor='end'>0%</text>"
            f"<text x='{left}' y='{bottom + 14}' font-size='11'>0</text>"
            f"<text x='{(left + right) / 2:.2f}' y='{bottom + 14}' font-size='11' text-anchor='middle'>macro</text>"
            f"<text x='{right:.2f}' y='{bottom + 14}' font-size='11' text-anchor='end'>{own.shape[0] - 1}</text>")
    return (f"<svg class=usage width='{right + 2:.0f}' height='{bottom + 18}' viewBox='0 0 {right + 2:.0f} "
            f"{bottom + 18}'>{''.join(bars)}{axis}</svg>")


MAP_WIDTH = 360  # pixels of a macro map's cells; its height follows WL:BL within [90, 480]


def _map_box(own: Owners) -> tuple[int, int, int, int]:
    """Width, height, left and top margins (pixels) of every macro map's cells."""
    return MAP_WIDTH, min(480, max(90, round(MAP_WIDTH * own.wordlines / max(own.shape[1], 1)))), 40, 6


def _ticks_symbol(own: Owners) -> str:
    """The axes shared by every macro map, defined once and drawn by ``<use href='#ticks'/>``."""
    width, height, left, top = _map_box(own)
    ticks = _map_ticks(max(own.shape[1], 1), max(own.wordlines, 1), width, height, left, top)
    return f"<svg width='0' height='0' style='position:absolute'><defs><g id=ticks>{ticks}</g></defs></svg>"


def _map_ticks(bl: int, wl: int, width: int, height: int, left: int, top: int) -> str:
    """Tick marks and labels every ``size/8`` bitlines (below) and wordlines (left), axis names."""
    lines, labels = [], []
    for t in range(0, bl + 1, max(bl // 8, 1)):
        x = left + t * width / bl
        lines.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top + height}' y2='{top + height + 4}'/>")
        labels.append(f"<text x='{x:.1f}' y='{top + height + 14}' text-anchor='middle'>{t}</text>")
    for t in range(0, wl + 1, max(wl // 8, 1)):
        y = top + t * height / wl
        lines.append(f"<line x1='{left - 4}' x2='{left}' y1='{y:.1f}' y2='{y:.1f}'/>")
        labels.append(f"<text x='{left - 6}' y='{y + 3:.1f}' text-anchor='end'>{t}</text>")
    names = (f"<text x='{left + width / 2:.0f}' y='{top + height + 26}' text-anchor='middle'>bitline</text>"
             f"<text transform='translate(10 {top + height / 2:.0f}) rotate(-90)' text-anchor='middle'>wordline</text>")
    return (f"<g stroke='#333'>{''.join(lines)}</g><g font-size='10' fill='#333'>{''.join(labels)}</g>"
            f"<g font-size='11'>{names}</g>")


#: A card's height (CSS px) beyond its map: padding and border (14), title (22), folded runs table
#: with its margins (36), as measured in Chromium 156 (tests/test_html_chromium.py checks it).
CARD_CHROME = 72


def _card_height(own: Owners) -> int:
    """The height a macro card takes at 1,280 px (three per row, maps scaled to the column), the
    size an off-screen card is laid out at before it is drawn (``content-visibility:auto``: the
    browser skips the maps below the fold, which halves VGG16's load time, and anchors still land;
    ``contain-intrinsic-size`` is the content box's, 14 px less for padding and border)."""
    width, height, left, top = _map_box(own)
    column = (PAGE_WIDTH - 2 * PAGE_PADDING - (MAP_COLUMNS - 1) * CARD_GAP) / MAP_COLUMNS - 14
    scale = min(1.0, column / (width + left + 14))
    return round((height + top + 32) * scale + CARD_CHROME)


def _run_labels(own: Owners, m: int, width: int, left: int, top: int) -> str:
    """As the PNG maps (``MacroRaster._label_runs``) when colours repeat: the layer index on a
    white tag at the top of each run of one layer along the bitlines that is wide enough for it
    (10 px text, about 6 px a digit; the clicks pass through to the cells)."""
    layer = own.layer[m]
    edges = np.flatnonzero(np.diff(layer)) + 1
    scale = width / max(layer.size, 1)
    tags = []
    for b0, b1 in zip(np.r_[0, edges].tolist(), np.r_[edges, layer.size].tolist(), strict=True):
        index, tag = int(layer[b0]), 6 * len(str(int(layer[b0]))) + 4
        if index < 0 or (b1 - b0) * scale < tag + 2:
            continue
        mid = left + (b0 + b1) / 2 * scale
        tags.append(f"<rect x='{mid - tag / 2:.1f}' y='{top + 1}' width='{tag}' height='13' fill='{IDLE}'/>"
                    f"<text x='{mid:.1f}' y='{top + 11}'>{index}</text>")
    return (f"<g class=tags font-size='10' text-anchor='middle' pointer-events='none'>{''.join(tags)}</g>"
            if tags else "")


def _macro_section(own: Owners, r: dict[str, np.ndarray], m: int, labels: bool = False) -> str:
    """A card: title, the map with ticks (hover: the cell; click: highlight its layer; past 20
    layers each run's layer index, ``_run_labels``), and the runs table folded, written by the
    script from the page data when first opened (``runsTable``)."""
    bl, wl = own.shape[1], own.wordlines
    width, height, left, top = _map_box(own)
    outer_w, outer_h = width + left + 14, height + top + 32
    svg = (f"<svg width='{outer_w}' height='{outer_h}' viewBox='0 0 {outer_w} {outer_h}'>"
           f"<svg class='macro' data-m='{m}' x='{left}' y='{top}' width='{width}' height='{height}' "
           f"viewBox='0 0 {bl} {wl}' preserveAspectRatio='none'><rect width='{bl}' height='{wl}' fill='{IDLE}'/>"
           f"<g stroke='#222' stroke-width='0.6' vector-effect='non-scaling-stroke'>{_rects(r, r['macro'] == m)}</g>"
           f"<rect width='{bl}' height='{wl}' fill='none' stroke='#333' vector-effect='non-scaling-stroke'/></svg>"
           f"<use href='#ticks'/>{_run_labels(own, m, width, left, top) if labels else ''}</svg>")
    return (f"<section class=card id='macro-{m}'><h3>macro {m}: {float(own.usage()[m]):.2%} used</h3>{svg}"
            f"<details data-m='{m}'><summary>runs on macro {m}</summary><div class=scroll></div></details></section>")


def _data(build: BuildDir, r: dict[str, np.ndarray]) -> str:
    short = short_names(build.layer_names, 28, modules=build.layer_modules)
    layers = [{"name": x.node, "op": x.op, "kernel": x.kernel, "rows": x.rows, "cout": x.cout,
               "groups": x.groups, "seg": [[s.row_start, s.row_stop] for s in x.segments], "S": x.w_slices,
               "short": short[i], "path": module_path(x.node, x.module),
               "color": [layer_color(i, 0), layer_color(i, 1)], "sw": [swatch_css(i, 0), swatch_css(i, 1)]}
              for i, x in enumerate(build.layout.layers)]
    table = np.stack([r[k] for k in RUN_FIELDS], axis=1).tolist() if r["macro"].size else []
    text = json.dumps({"layers": layers, "runs": table}, separators=(",", ":"))
    return text.replace("</", "<\\/")


def _pool_section(build: BuildDir) -> str:
    """The weight pool's bitlines and every pooled layer's index table as inline PNGs (empty
    without a pool; ``cimc.views.pool_map``)."""
    tables = read_pool(build)
    if tables is None:
        return ""

    def img(canvas: Canvas, alt: str) -> str:
        data = base64.b64encode(png_bytes(canvas)).decode("ascii")
        return f"<img class=pool alt='{_esc(alt)}' src='data:image/png;base64,{data}'>"

    p, length = tables.pool.shape
    parts = [f"<h2 id=pool>Weight pool</h2><p>{p} binary vectors of {length} weights, stored once: one bitline per "
             "vector (across), its wordlines down; dark = +1, light = −1. Each pooled layer's index table gives, per "
             "vector position (down) and output channel (across), the pool vector it uses, in that vector's "
             "colour; a dot marks a position that keeps an error vector.</p>",
             f"<div class=scroll>{img(pool_canvas(tables), 'weight pool')}</div>"]
    for x in tables.layers:
        parts.append(f"<details data-layer-pool='{x.layer}'><summary>layer {x.layer}: {_esc(x.name)} — index table "
                     f"{x.index.shape[0]}×{x.index.shape[1]}</summary><div class=scroll>"
                     f"{img(index_canvas(tables, x), 'index table of ' + x.name)}</div></details>")
    return "".join(parts)


def html_report(build: BuildDir) -> str:
    """The whole report as one HTML string."""
    own = build.owners
    r = runs(own)
    macro, title = build.macro, _esc(f"cimc build: {build.name}")
    spec = (f"{macro.name}: {macro.wordlines}×{macro.bitlines} cells of {macro.cell_bits} bits, {macro.adcs} ADCs "
            f"of {macro.adc_bits} bits, {macro.load_cycles} cycles per load")
    labels = colors_repeat(len(build.layer_names))
    sections = "".join(_macro_section(own, r, m, labels) for m in range(own.shape[0]))
    pool_link = " · <a href='#pool'>weight pool</a>" if build.has(POOL_FILE) else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width,initial-scale=1'><title>{title}</title><style>{CSS}</style>"
            f"<style id=hl></style></head>"
            f"<body><h1>{title}</h1><p>Macro {_esc(spec)}. Build folder <code>{_esc(build.path)}</code>.</p>"
            f"<p>Contents: <a href='#layers'>layers</a> · <a href='#macros'>macros</a> · <a href='#maps'>macro maps</a>"
            f"{pool_link} · <a href='#report'>report</a> · <a href='#timeline'>timeline</a> · "
            f"<a href='#geometry'>CIM layers</a>"
            f"</p><h2 id=layers>Layers</h2><p>Click a layer (here, in a table, a bar or a map) to highlight its cells "
            f"everywhere; click it again to clear.</p>{_layer_list(build)}"
            f"<h2 id=macros>Macros</h2><p>Each tile is one macro (wordlines down, bitlines across); colour = layer, "
            f"lighter = odd segment, white = idle. Click a tile for its map; hover a map for the cell's details.</p>"
            f"{_overview(build, own, r)}<h3>Usage per macro, by layer</h3>{_usage_bars(build, own)}"
            f"<h2 id=maps>Macro maps</h2>{_ticks_symbol(own)}{_hatch_defs(own)}"
            f"<div class=maps style='--card-h:{_card_height(own) - 14}px'>{sections}</div>"
            f"{_pool_section(build)}<h2 id=report>Report</h2>{_report_table(build.report)}"
            f"<h2 id=timeline>Timeline</h2>{_timeline_section(build)}<h2 id=geometry>CIM layers</h2>"
            f"{_layers_table(build)}<div id=tip></div>"
            f"<script type='application/json' id='cimc-data'>{_data(build, r)}</script>"
            f"<script>{SCRIPT}</script></body></html>\n")


def write_html(build: BuildDir, path: str | Path) -> Path:
    from cimc.untrusted import refuse_special_output

    out = Path(path)
    refuse_special_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_report(build), encoding="utf-8")
    return out
