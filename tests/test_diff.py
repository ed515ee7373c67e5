"""``cimc diff``: identical builds, packed vs aligned placement (moved columns and changed
cells checked against a plain loop over the layouts), a flipped weight, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from cimc.build.reader import read_build
from cimc.cli.main import main
from cimc.views.diff import diff_builds
from tests.map_builds import build, copy_build, edit_weights

PACKED = ("digits_cnn", {})
ALIGNED = ("digits_cnn", {"placement": "aligned"})


def _cell_owner_loop(layout: dict[str, Any], m: int) -> dict[tuple[int, int], tuple[str, int, int, int]]:
    """Reference: cell → (layer name, segment, output channel, row offset), bitline by bitline."""
    out = {}
    owner = layout["macros"][m]
    for b, layer in enumerate(owner["layer"]):
        if layer < 0:
            continue
        entry = layout["layers"][layer]
        seg = entry["segments"][owner["segment"][b]]
        for t in range(seg["row_stop"] - seg["row_start"]):
            out[(owner["wordline_start"][b] + t, b)] = (entry["node"], owner["segment"][b], owner["out_channel"][b], t)
    return out


def test_identical_builds() -> None:
    doc = diff_builds(read_build(build(PACKED[0], **PACKED[1])), read_build(build(PACKED[0], **PACKED[1])))
    assert doc["identical"] and doc["macros"] == [] and all(x["status"] == "same" for x in doc["layers"])


def test_packed_vs_aligned() -> None:
    a, b = read_build(build(PACKED[0], **PACKED[1])), read_build(build(ALIGNED[0], **ALIGNED[1]))
    doc = diff_builds(a, b)
    assert doc["options"] == {"placement": ["packed", "aligned"]}
    assert doc["totals"]["macros"] == [a.report["totals"]["macros"], b.report["totals"]["macros"]]
    first = {x.node: (x.first_column, y.first_column) for x, y in zip(a.layout.layers, b.layout.layers, strict=True)}
    for layer, entry in zip(doc["layers"], a.layout.layers, strict=True):
        fa, fb = first[layer["name"]]
        assert layer["moved_columns"] == (entry.columns if fa != fb else 0)
        shown = sum(r["out_channels"][1] - r["out_channels"][0] + 1 for r in layer["moved_runs"])
        assert shown == layer["moved_columns"] or layer["moved_run_count"] > len(layer["moved_runs"])
    changed = {x["macro"]: x["cells_changed"] for x in doc["macros"] if "cells_changed" in x}
    for m in range(min(a.num_macros, b.num_macros)):
        ca, cb = _cell_owner_loop(a.layout_json, m), _cell_owner_loop(b.layout_json, m)
        expected = sum(ca.get(k) != cb.get(k) for k in set(ca) | set(cb))
        assert changed.get(m, 0) == expected


def test_flipped_weight_changes_one_value(tmp_path: Path) -> None:
    folder = copy_build(tmp_path / "b", "tiny_cnn")
    edit_weights(folder, 0, lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, x + 1, x).astype(x.dtype))
    doc = diff_builds(read_build(build("tiny_cnn")), read_build(folder))
    assert not doc["identical"]
    assert doc["macros"] == [{"macro": 0, "cells_changed": 0, "weights_changed": 1,
                              "usage": [doc["macros"][0]["usage"][0]] * 2}]


def test_diff_cli() -> None:
    a, b = build(PACKED[0], **PACKED[1]), build(ALIGNED[0], **ALIGNED[1])
    result = CliRunner().invoke(main, ["diff", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "moved regions" in result.output and "placement" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 100
    doc = json.loads(CliRunner().invoke(main, ["--json", "diff", str(a), str(b)]).output)
    assert doc == json.loads(json.dumps(diff_builds(read_build(a), read_build(b))))
    assert CliRunner().invoke(main, ["diff", str(a), "/nonexistent"]).exit_code == 8


def test_unreadable_weights_are_never_same_weights(tmp_path: Path) -> None:
    """A build whose weights cannot be read (or lack a macro's array) is not "same weights"."""
    base = build(PACKED[0], **PACKED[1])
    for damage in ("corrupt", "wrong shape"):
        folder = copy_build(tmp_path / damage.replace(" ", "_"), PACKED[0], **PACKED[1])
        if damage == "corrupt":
            (folder / "weights.safetensors").write_bytes(b"not a safetensors file")
        else:
            edit_weights(folder, 0, lambda array: array[:-1])
        doc = diff_builds(read_build(base), read_build(folder))
        assert not doc["identical"]
        assert any("weights not compared" in str(m.get("note")) for m in doc["macros"]), doc["macros"]
        out = CliRunner().invoke(main, ["diff", str(base), str(folder)]).output
        assert "same weights" not in out and "weights not compared" in out


def _column_places(layout: dict[str, Any]) -> dict[tuple[str, int, int, int], tuple[int, int, int]]:
    """Reference: (layer, segment, output channel, weight digit) → (macro, bitline, first wordline)."""
    out = {}
    for m, owner in enumerate(layout["macros"]):
        digits = owner.get("slice") or [0] * len(owner["layer"])
        for b, layer in enumerate(owner["layer"]):
            if layer >= 0:
                key = (layout["layers"][layer]["node"], owner["segment"][b], owner["out_channel"][b], digits[b])
                out[key] = (m, b, owner["wordline_start"][b])
    return out


def test_unsliced_vs_sliced_weights() -> None:
    """8-bit weights on 4-bit cells put two digits of a channel on adjacent bitlines: the diff
    matches columns by (segment, channel, digit), as a plain loop over the layouts does."""
    a, b = read_build(build("digits_cnn")), read_build(build("digits_cnn", w_bits=8))
    doc = diff_builds(a, b)
    pa, pb = _column_places(a.layout_json), _column_places(b.layout_json)
    for layer in doc["layers"]:
        ka = {k for k in pa if k[0] == layer["name"]}
        kb = {k for k in pb if k[0] == layer["name"]}
        assert layer["only_in_a"] == len(ka - kb) == 0
        assert layer["only_in_b"] == len(kb - ka) == len(ka)
        assert layer["moved_columns"] == sum(pa[k] != pb[k] for k in ka & kb)


def _slot_loop(schedule: dict[str, Any]) -> dict[int, tuple[int, int, int]]:
    """Reference: per slot (compute cycles, load cycles, loads), event by event."""
    out: dict[int, list[int]] = {}
    for ph in schedule["timeline"]["phases"]:
        for s in ph["slots"]:
            out.setdefault(s, [0, 0, 0])[0] += ph["end"] - ph["start"]
    for ld in schedule["timeline"]["loads"]:
        row = out.setdefault(ld["slot"], [0, 0, 0])
        row[1] += ld["end"] - ld["start"]
        row[2] += 1
    return {s: (r[0], r[1], r[2]) for s, r in out.items()}


def test_diff_compares_two_timelines() -> None:
    """paper on 1 physical macro vs overlap on 2, at batch 2: latency, energy and per-slot work
    differ as the two reports and the two schedules' events say; the terminal form shows them."""
    a = read_build(build("digits_cnn", bitline_budget=256, infer_batch=2))
    b = read_build(build("digits_cnn", bitline_budget=512, infer_batch=2, timing="overlap"))
    doc = diff_builds(a, b)
    tl = doc["timeline"]
    assert not doc["identical"] and tl["latency"]["timing"] == ["paper", "overlap"]
    for key in ("cycles_per_inference", "overlap_cycles", "stall_cycles"):
        want = [a.report["latency"][key], b.report["latency"][key]]
        assert tl["latency"].get(key, want) == want and (key not in tl["latency"]) == (want[0] == want[1])
    for key, pair in tl["energy"].items():
        assert pair == [a.report["energy"][key], b.report["energy"][key]] and pair[0] != pair[1]
    sa, sb = _slot_loop(a.schedule), _slot_loop(b.schedule)
    want = sorted(s for s in set(sa) | set(sb) if sa.get(s, (0, 0, 0)) != sb.get(s, (0, 0, 0)))
    assert [x["slot"] for x in tl["slots"]] == want and want
    for x in tl["slots"]:
        s = x["slot"]
        assert [x["compute_cycles"][0], x["load_cycles"][0], x["loads"][0]] == list(sa.get(s, (0, 0, 0)))
        assert [x["compute_cycles"][1], x["load_cycles"][1], x["loads"][1]] == list(sb.get(s, (0, 0, 0)))
    assert diff_builds(a, a)["timeline"] == {"latency": {}, "energy": {}, "area": {}, "slots": []}
    result = CliRunner().invoke(main, ["diff", str(a.path), str(b.path)])
    assert result.exit_code == 0, result.output
    assert "timeline: latency (cycles)" in result.output and "physical macros whose work changed" in result.output
