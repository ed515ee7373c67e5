"""The terminal form of ``cimc diff`` (rich renderables, ≤ 100 columns) from ``diff_builds``."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cimc.views.names import short_names

MAX_MACROS = 20
#: The widest layer name a table shows (``cimc.views.names``: the distinctive end, unique).
NAME_WIDTH = 28


def _shown(layers: list[dict[str, Any]]) -> dict[str, str]:
    """Each layer's name as the tables show it: its module path where recorded, shortened."""
    names = [x["name"] for x in layers]
    return dict(zip(names, short_names(names, NAME_WIDTH, modules=[x.get("module") for x in layers]), strict=True))


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{100 * value:.2f}%" if 0 <= value <= 1 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _number(value: Any) -> Any:
    """A float as text with a thousands separator (``_value`` would show one in [0, 1] as a share)."""
    return f"{value:,.2f}" if isinstance(value, float) else value


def _pairs_table(title: str, pairs: dict[str, list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for head in ("", "A", "B"):
        table.add_column(head, justify="left" if not head else "right")
    for key, (a, b) in pairs.items():
        table.add_row(key, _value(a), _value(b))
    return table


def _layers(doc: dict[str, Any]) -> Table:
    table = Table(title="layers", title_justify="left")
    for head in ("layer", "status", "changes (A → B)", "moved"):
        table.add_column(head)
    shown = _shown(doc["layers"])
    for x in doc["layers"]:
        if x["status"] in ("added", "removed"):
            table.add_row(shown[x["name"]], x["status"], "", "")
            continue
        changes = "; ".join(f"{k} {_value(a)} → {_value(b)}" for k, (a, b) in x["changes"].items())
        moved = f"{x['moved_columns']:,} col." if x["moved_columns"] else ""
        table.add_row(shown[x["name"]], x["status"], changes, moved)
    return table


def _runs(doc: dict[str, Any]) -> list[Text]:
    lines = []
    shown = _shown(doc["layers"])
    for x in doc["layers"]:
        for r in x.get("moved_runs", []):
            a, b = r["from"], r["to"]
            out = f"{r['out_channels'][0]}–{r['out_channels'][1]}"
            lines.append(Text(f"  {shown[x['name']]} seg {r['segment']} out {out}: "
                              f"m{a['macro']}:b{a['bitlines'][0]}–{a['bitlines'][1]} → "
                              f"m{b['macro']}:b{b['bitlines'][0]}–{b['bitlines'][1]}"))
        hidden = x.get("moved_run_count", 0) - len(x.get("moved_runs", []))
        if hidden > 0:
            lines.append(Text(f"  {shown[x['name']]}: {hidden} more moved run(s)", style="grey50"))
    title = Text("moved regions (segment, output channels: macro:bitlines A → B)", style="bold")
    return [title, *lines] if lines else []


def _macros(doc: dict[str, Any]) -> list[Text]:
    rows = doc["macros"]
    if not rows:
        return []
    lines = [Text(f"macros that changed: {len(rows)}", style="bold")]
    for x in rows[:MAX_MACROS]:
        if "note" in x:
            lines.append(Text(f"  {x['note']}"))
        elif "only_in" in x:
            lines.append(Text(f"  macro {x['macro']}: only in {x['only_in'].upper()}"))
        else:
            a, b = x["usage"]
            lines.append(Text(f"  macro {x['macro']}: {x['cells_changed']:,} cells changed owner, "
                              f"{x['weights_changed']:,} values; usage {a:.2%} → {b:.2%}"))
    if len(rows) > MAX_MACROS:
        lines.append(Text(f"  … and {len(rows) - MAX_MACROS} more (--json lists all)", style="grey50"))
    return lines


def _timeline(doc: dict[str, Any]) -> list[RenderableType]:
    section = doc.get("timeline") or {}
    parts: list[RenderableType] = []
    for key, title in (("latency", "timeline: latency (cycles)"), ("energy", "timeline: energy per inference (pJ)"),
                       ("area", "area (µm²)")):
        if section.get(key):  # pJ, µm², cycles: numbers, never shares
            parts.append(_pairs_table(title, {k: [_number(a), _number(b)] for k, (a, b) in section[key].items()}))
    slots = section.get("slots", [])
    if slots:
        table = Table(title=f"physical macros whose work changed: {len(slots)}", title_justify="left")
        for head in ("slot", "compute cyc. A → B", "load cyc. A → B", "loads A → B"):
            table.add_column(head, justify="right")
        for x in slots[:MAX_MACROS]:
            table.add_row(str(x["slot"]), *(f"{_value(x[k][0])} → {_value(x[k][1])}"
                                             for k in ("compute_cycles", "load_cycles", "loads")))
        parts.append(table)
        if len(slots) > MAX_MACROS:
            parts.append(Text(f"  … and {len(slots) - MAX_MACROS} more (--json lists all)", style="grey50"))
    if section.get("note"):
        parts.append(Text(section["note"]))
    return parts


def diff_renderable(doc: dict[str, Any]) -> RenderableType:
    if doc["identical"]:
        return Text(f"{doc['a']} and {doc['b']}: same mapping, same figures, same weights")
    parts: list[RenderableType] = [Text(f"A = {doc['a']}\nB = {doc['b']}")]
    settings = {**doc["macro_spec"], **doc["options"]}
    if doc["bitline_budget"]:
        settings["bitline budget"] = doc["bitline_budget"]["v"]
    if settings:
        parts.append(_pairs_table("settings", settings))
    if doc["totals"]:
        parts.append(_pairs_table("totals", doc["totals"]))
    parts += [_layers(doc), *_runs(doc), *_macros(doc), *_timeline(doc)]
    return Group(*parts)
