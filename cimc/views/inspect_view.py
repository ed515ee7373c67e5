"""What ``cimc inspect`` shows, as rich renderables at most 100 columns wide.

``overview`` — the build's summary, its per-layer table and one strip per macro;
``macro_view`` — one macro as a 2-D map with its runs (layer, segment, output channels,
bitlines, wordlines); ``layer_view`` — one layer's segments (rows, input channels,
wordlines) and the strips of the macros it occupies, other layers dimmed. ``summary``
is the JSON form of the same facts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cimc.build.cell_map import Owners, runs
from cimc.build.reader import BuildDir
from cimc.errors import UsageError
from cimc.views.names import full_label, module_path, short_names
from cimc.views.palette import key_width, layer_color, symbol
from cimc.views.text_map import legend, macro_block, macro_strips


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "–"


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "–"


def summary(build: BuildDir) -> dict[str, Any]:
    own = build.owners
    totals = (build.report or {}).get("totals", {})
    source = build.manifest.get("input", {})
    return {"build": str(build.path), "model": build.name, "source": source, "macro": build.layout.macro.to_json(),
            "options": build.manifest.get("options", {}), "bitline_budget": build.manifest.get("bitline_budget"),
            "files": sorted(p.name for p in build.path.iterdir() if p.is_file()),
            "macros": own.shape[0], "cells_used": int(own.cells_used().sum()), "totals": totals,
            "layers": [{"index": i, "name": x.node, "op": x.op, "segments": len(x.segments),
                        "bitlines": x.columns, "macros": x.macros} for i, x in enumerate(build.layout.layers)],
            "macro_usage": [round(float(u), 6) for u in own.usage()]}


def _summary_grid(build: BuildDir, own: Owners) -> Table:
    doc = summary(build)
    m = doc["macro"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    source = doc["source"]
    grid.add_row("model", f"{doc['model']} ({source.get('kind')} {source.get('name')}, "
                          f"sha256 {str(source.get('sha256', ''))[:12]}…)")
    grid.add_row("macro", f"{m['name']}: {m['wordlines']}×{m['bitlines']} cells of {m['cell_bits']} bits, "
                          f"{m['adcs']} ADCs of {m['adc_bits']} bits, {m['load_cycles']} load cycles")
    grid.add_row("options", ", ".join(f"{k}={v}" for k, v in doc["options"].items()))
    total = doc["macros"] * m["wordlines"] * m["bitlines"]
    grid.add_row("mapping", f"{len(doc['layers']):,} CIM layers on {doc['macros']:,} macros, "
                            f"{doc['cells_used']:,} of {total:,} cells used ({doc['cells_used'] / max(total, 1):.2%}); "
                            f"budget {doc['bitline_budget']:,} bitlines")
    grid.add_row("files", ", ".join(doc["files"]))
    return grid


def _layer_table(build: BuildDir) -> Table:
    figures = {x["name"]: x for x in (build.report or {}).get("layers", [])}
    table = Table(title="CIM layers", title_justify="left")
    for head in ("", "layer", "op", "k", "Cout", "seg.", "bitlines", "macros", "usage", "cycles"):
        table.add_column(head, justify="left" if head in ("layer", "op", "") else "right")
    width = key_width(len(build.layout.layers))
    names = short_names(build.layer_names, modules=build.layer_modules)
    for i, x in enumerate(build.layout.layers):
        f = figures.get(x.node, {})
        macros = x.macros
        keys = f"{symbol(i, 0, width)}/{symbol(i, 1, width)}"
        table.add_row(Text(keys, style=f"bold {layer_color(i)}"), names[i], x.op,
                      f"{x.kernel[0]}×{x.kernel[1]}", _int(x.cout), _int(len(x.segments)),
                      _int(x.columns), f"{macros[0]}–{macros[-1]}" if macros else "–",
                      _pct(f.get("macro_usage")), _int(f.get("computing_cycles")))
    return table


def overview(build: BuildDir) -> RenderableType:
    own = build.owners
    strips = [Text("macro │ bitlines (one key per layer; lower case = odd segment) │ usage", style="grey50")]
    strips += macro_strips(own)
    return Group(_summary_grid(build, own), Text(""), _layer_table(build), Text(""), *strips,
                 *legend(short_names(build.layer_names, modules=build.layer_modules)), *slicing_lines(build))


def slicing_lines(build: BuildDir, present: list[int] | None = None) -> list[Text]:
    """``layer 3 (conv3): 8-bit weights over 2 cells`` for each bit-sliced layer shown."""
    return [Text(f"  layer {i} ({build.layer_names[i]}): {note}; its digit columns are adjacent bitlines",
                 style="grey50")
            for i, note in build.slicing_notes.items() if present is None or i in present]


def find_layer(build: BuildDir, name: str) -> int:
    """Index of the layer named ``name`` (exact, else the only one whose module path, as the
    tables show it (``names.module_path``: the recorded module, else ``compact``), is ``name``,
    else the only one whose name or module path contains it)."""
    names = build.layer_names
    if name in names:
        return names.index(name)
    paths = [module_path(n, m) for n, m in zip(names, build.layer_modules, strict=True)]
    if paths.count(name) == 1:
        return paths.index(name)
    hits = [i for i, (n, p) in enumerate(zip(names, paths, strict=True)) if name in n or name in p]
    if len(hits) == 1:
        return hits[0]
    raise UsageError(f"no single CIM layer matches '{name}'", hint=f"layers: {', '.join(names)}")


def check_macro(build: BuildDir, m: int) -> None:
    if not 0 <= m < build.num_macros:
        raise UsageError(f"macro {m} does not exist: the build has macros 0…{build.num_macros - 1}")


def _runs_table(build: BuildDir, own: Owners, m: int, layer: int | None) -> Table:
    r = runs(own)
    sel = (r["macro"] == m) & ((r["layer"] == layer) if layer is not None else True)
    table = Table(title=f"macro {m}: {float(own.usage()[m]):.2%} used", title_justify="left")
    short = short_names(build.layer_names, modules=build.layer_modules)
    for head in ("layer", "segment", "out channels", "bitlines", "wordlines"):
        table.add_column(head, justify="left" if head == "layer" else "right")
    for idx in np.flatnonzero(sel).tolist():
        la, s, o = int(r["layer"][idx]), int(r["segment"][idx]), int(r["out_channel"][idx])
        b0, b1 = int(r["bitline_start"][idx]), int(r["bitline_stop"][idx])
        key = symbol(la, s, key_width(len(build.layer_names)))
        table.add_row(Text(f"{key} {short[la]}", style=layer_color(la, s)), str(s),
                      _channels(build, la, o, int(r["slice"][idx]), b1 - b0), f"{b0}–{b1 - 1}",
                      f"{int(r['wordline_start'][idx])}–{int(r['wordline_stop'][idx]) - 1}")
    return table


def _channels(build: BuildDir, layer: int, out: int, digit: int, width: int) -> str:
    """Output channels of a run of ``width`` bitlines; with ``S`` weight digits per channel
    (column ``o·S + j``) also the digits: ``3–4 (×2 digits)``."""
    slices = build.layout.layers[layer].w_slices
    first = out * slices + digit
    lo, hi = first // slices, (first + width - 1) // slices
    return f"{lo}–{hi}" + (f" (×{slices} digits)" if slices > 1 else "")


def macro_view(build: BuildDir, m: int, layer: int | None = None) -> RenderableType:
    check_macro(build, m)
    own = build.owners
    present = np.unique(own.layer[m][own.used[m]]).tolist()
    names = short_names(build.layer_names, modules=build.layer_modules)
    return Group(*macro_block(own, m, layer), *legend(names, present),
                 *slicing_lines(build, present), Text(""), _runs_table(build, own, m, layer))


def layer_view(build: BuildDir, index: int) -> RenderableType:
    own = build.owners
    x = build.layout.layers[index]
    k = x.kernel[0] * x.kernel[1]
    title = (f"layer {index}: {full_label(x.node, x.module)} ({x.op}, {x.kernel[0]}×{x.kernel[1]}, "
             f"Cout {x.cout}, groups {x.groups}, tiling {x.tiling})")
    table = Table(title=escape(title), title_justify="left")
    for head in ("segment", "rows", "input channels", "wordlines", "bitlines", "macros"):
        table.add_column(head, justify="right")
    for s in x.segments:
        mine = own.used & (own.layer == index) & (own.segment == s.index)
        macros = np.unique(np.nonzero(mine)[0]).tolist()
        key = symbol(index, s.index, key_width(len(build.layer_names)))
        table.add_row(Text(f"{key} {s.index}", style=layer_color(index, s.index)),
                      f"{s.row_start}–{s.row_stop - 1}", f"{s.row_start // k}–{(s.row_stop - 1) // k}",
                      str(s.row_stop - s.row_start), _int(int(mine.sum())),
                      f"{macros[0]}–{macros[-1]}" if macros else "–")
    strips = macro_strips(own, list(x.macros), highlight=index)
    holding = Text(f"macros holding {full_label(x.node, x.module)} (· = other layers)", style="grey50")
    return Group(table, Text(""), holding, *strips)
