"""``cimc diff``: what changed between two builds, per layer and per macro region.

Layers are matched by node name. For each layer the report figures (bitlines, segments,
macros, cycles, usage, …) are compared, and its columns — keyed by ``(segment s, output
channel o)`` — are located in both builds: a column *moved* when its (macro, bitline,
first wordline) differs. Moved columns are summarised as runs over consecutive output
channels of one segment that shift together (``m0:b64–b191 → m1:b0–b127``). Per macro,
a cell *changed* when its owner differs — layer name, segment, output channel or row
(``w − w0``) — and, when both arrays can be read with the same shape, a weight changed
when its value does. Everything is one vectorised comparison per layer or per macro. The
timelines — latency, energy, area and per physical macro — are compared by
``cimc.views.diff_timeline``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cimc.build.cell_map import Owners
from cimc.build.reader import BuildDir
from cimc.errors import CimcError
from cimc.views.diff_timeline import diff_timeline, timeline_changed

LAYER_FIELDS = ("params", "bitlines", "segments", "activated_wordlines", "adc_conversions", "macros",
                "macro_usage", "loading_cycles", "computing_cycles")
KEY = 1 << 32
MAX_RUNS = 12


def _layer_figures(build: BuildDir) -> dict[str, dict[str, Any]]:
    if build.report and build.report.get("layers"):
        return {x["name"]: x for x in build.report["layers"]}
    from cimc.check.cost import recomputed_cost

    return {x.name: dict(vars(x)) for x in recomputed_cost(build).layers}


def _totals(build: BuildDir) -> dict[str, Any]:
    if build.report and build.report.get("totals"):
        return dict(build.report["totals"])
    from cimc.check.cost import recomputed_cost

    return {k: v for k, v in recomputed_cost(build).to_dict().items() if k != "layers"}


def _changed(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return not math.isclose(a, b, rel_tol=1e-12)
    return bool(a != b)


def _pairs(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...] | None = None) -> dict[str, list[Any]]:
    chosen = keys or tuple(sorted(set(a) | set(b)))
    return {k: [a.get(k), b.get(k)] for k in chosen if _changed(a.get(k), b.get(k))}


def _columns(build: BuildDir, own: Owners, name: str, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys ``s·2^32 + o·digits + j`` of a layer's columns (segment ``s``, output channel ``o``,
    weight digit ``j`` of ``digits`` per channel), sorted, and their ``(macro, bitline, w0)``."""
    index = build.layer_names.index(name)
    m, b = np.nonzero(own.used & (own.layer == index))
    keys = own.segment[m, b] * KEY + own.out_channel[m, b] * digits + own.slices[m, b]
    order = np.argsort(keys, kind="stable")
    return keys[order], np.stack([m, b, own.start[m, b]], axis=1)[order]


def _digits(own: Owners, index: int) -> int:
    """Weight digits per output channel of layer ``index`` (1 when unsliced)."""
    mine = own.layer == index
    return int(own.slices[mine].max()) + 1 if mine.any() else 1


def moved_runs(keys: np.ndarray, where_a: np.ndarray, where_b: np.ndarray,
               digits: int = 1) -> tuple[list[dict[str, Any]], int]:
    """Runs of moved columns (the first ``MAX_RUNS``) and their count: consecutive keys whose
    positions both advance one bitline (keys of ``_columns`` with ``digits`` per channel)."""
    if keys.size == 0:
        return [], 0
    step = np.ones(keys.size, dtype=bool)
    step[0] = False
    step[1:] = ((keys[1:] == keys[:-1] + 1) & (where_a[1:, 0] == where_a[:-1, 0]) & (where_b[1:, 0] == where_b[:-1, 0])
                & (where_a[1:, 1] == where_a[:-1, 1] + 1) & (where_b[1:, 1] == where_b[:-1, 1] + 1))
    first = np.flatnonzero(~step)
    last = np.append(first[1:], keys.size) - 1
    channel = keys % KEY // digits
    return [{"segment": int(keys[f] // KEY), "out_channels": [int(channel[f]), int(channel[g])],
             "from": {"macro": int(where_a[f, 0]), "bitlines": [int(where_a[f, 1]), int(where_a[g, 1])]},
             "to": {"macro": int(where_b[f, 0]), "bitlines": [int(where_b[f, 1]), int(where_b[g, 1])]}}
            for f, g in zip(first[:MAX_RUNS].tolist(), last[:MAX_RUNS].tolist(), strict=True)], int(first.size)


def _layer_moves(a: BuildDir, own_a: Owners, b: BuildDir, own_b: Owners, name: str) -> dict[str, Any]:
    digits = max(_digits(own_a, a.layer_names.index(name)), _digits(own_b, b.layer_names.index(name)))
    keys_a, at_a = _columns(a, own_a, name, digits)
    keys_b, at_b = _columns(b, own_b, name, digits)
    common, ia, ib = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    moved = (at_a[ia] != at_b[ib]).any(axis=1)
    runs, count = moved_runs(common[moved], at_a[ia][moved], at_b[ib][moved], digits)
    return {"moved_columns": int(moved.sum()), "only_in_a": int(keys_a.size - common.size),
            "only_in_b": int(keys_b.size - common.size), "moved_runs": runs, "moved_run_count": count}


def diff_layers(a: BuildDir, b: BuildDir) -> list[dict[str, Any]]:
    fig_a, fig_b = _layer_figures(a), _layer_figures(b)
    own_a, own_b = a.owners, b.owners
    names = a.layer_names + [n for n in b.layer_names if n not in set(a.layer_names)]
    modules = {**dict(zip(b.layer_names, b.layer_modules, strict=True)),
               **dict(zip(a.layer_names, a.layer_modules, strict=True))}
    out: list[dict[str, Any]] = []
    for name in names:
        if name not in fig_a or name not in fig_b:
            out.append({"name": name, "module": modules[name], "status": "removed" if name in fig_a else "added"})
            continue
        entry = {"name": name, "module": modules[name], "changes": _pairs(fig_a[name], fig_b[name], LAYER_FIELDS),
                 **_layer_moves(a, own_a, b, own_b, name)}
        moved = entry["moved_columns"] or entry["only_in_a"] or entry["only_in_b"]
        entry["status"] = "changed" if entry["changes"] or moved else "same"
        out.append(entry)
    return out


def _identity(build: BuildDir, own: Owners, names: dict[str, int], radix: tuple[int, int]) -> np.ndarray:
    """Per bitline, one integer naming its column ``(layer name, segment, output channel)`` in
    mixed radix ``(segments, channels)``; −1 where idle."""
    ids = np.array([names[n] for n in build.layer_names] or [0], dtype=np.int64)
    ident = (ids[np.maximum(own.layer, 0)] * radix[0] + own.segment) * radix[1] + own.out_channel
    return np.where(own.used, ident, -1)


def _cells(ident: np.ndarray, own: Owners, m: int) -> np.ndarray:
    """``(WL, BL)``: ``ident·WL + (w − w0)`` on occupied cells (which weight it holds), −1 idle."""
    w = np.arange(own.wordlines)[:, None]
    inside = (w >= own.start[m]) & (w < own.stop[m])
    return np.where(inside, ident[m] * own.wordlines + (w - own.start[m]), -1)


def diff_macros(a: BuildDir, b: BuildDir) -> list[dict[str, Any]]:
    """Macros whose cells changed owner or value; macros present in one build only."""
    own_a, own_b = a.owners, b.owners
    if (own_a.wordlines, own_a.shape[1]) != (own_b.wordlines, own_b.shape[1]):
        return [{"macro": "all", "note": "the macros have different sizes"}]
    names = {n: i for i, n in enumerate(dict.fromkeys(a.layer_names + b.layer_names))}
    radix = (1 + max(int(own_a.segment.max(initial=0)), int(own_b.segment.max(initial=0))),
             1 + max(int(own_a.out_channel.max(initial=0)), int(own_b.out_channel.max(initial=0))))
    id_a, id_b = _identity(a, own_a, names, radix), _identity(b, own_b, names, radix)
    shared = min(own_a.shape[0], own_b.shape[0])
    changed = [int((_cells(id_a, own_a, m) != _cells(id_b, own_b, m)).sum()) for m in range(shared)]
    values, why = _weight_changes(a, b, shared)
    usage_a, usage_b = own_a.usage(), own_b.usage()
    out: list[dict[str, Any]] = [
        {"macro": m, "cells_changed": changed[m], "weights_changed": values.get(m, 0),
         "usage": [float(usage_a[m]), float(usage_b[m])]} for m in range(shared) if changed[m] or values.get(m)]
    out += [{"macro": m, "only_in": "a", "usage": [float(usage_a[m]), None]} for m in range(shared, own_a.shape[0])]
    out += [{"macro": m, "only_in": "b", "usage": [None, float(usage_b[m])]} for m in range(shared, own_b.shape[0])]
    if why is not None:
        out.append({"macro": "all", "note": f"weights not compared: {why}"})
    return out


def _weight_changes(a: BuildDir, b: BuildDir, shared: int) -> tuple[dict[int, int], str | None]:
    """Changed values per shared macro, and why some weights could not be compared (``None``:
    all were): an unreadable file, a missing array or arrays of different shapes are never
    reported as "same weights"."""
    try:
        wa, wb = a.weights(), b.weights()
    except CimcError as exc:  # unreadable weights: the layout diff still stands
        return {}, exc.message
    out, missing = {}, []
    for m in range(shared):
        x, y = wa.get(f"macro_{m:04d}"), wb.get(f"macro_{m:04d}")
        if x is None or y is None or x.shape != y.shape:
            missing.append(m)
            continue
        count = int((x.astype(np.float64) != y.astype(np.float64)).sum())
        if count:
            out[m] = count
    why = None if not missing else f"macro {missing[0]} has no array of the macro's shape in both builds" + (
        f" ({len(missing)} macros)" if len(missing) > 1 else "")
    return out, why


def diff_builds(a: BuildDir, b: BuildDir) -> dict[str, Any]:
    """Everything that differs between builds ``a`` and ``b`` (JSON-ready)."""
    layers, macros = diff_layers(a, b), diff_macros(a, b)
    out: dict[str, Any] = {
           "a": str(a.path), "b": str(b.path), "macro_spec": _pairs(a.layout.macro.to_json(), b.layout.macro.to_json()),
           "options": _pairs(a.manifest.get("options", {}), b.manifest.get("options", {})),
           "bitline_budget": _pairs({"v": a.manifest.get("bitline_budget")}, {"v": b.manifest.get("bitline_budget")}),
           "totals": _pairs(_totals(a), _totals(b)), "layers": layers, "macros": macros,
           "timeline": diff_timeline(a, b)}
    out["identical"] = not (out["macro_spec"] or out["options"] or out["bitline_budget"] or out["totals"] or macros
                            or any(x["status"] != "same" for x in layers) or timeline_changed(out["timeline"]))
    return out
