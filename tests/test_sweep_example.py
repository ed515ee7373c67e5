"""``examples/sweep.toml`` as shipped: every point compiles, and every axis of it matters — for each
axis, some two points that differ only in that axis differ in a result (accuracy of the trained
``digits_cnn``, latency, bitlines, macros, usage, conversions, parameters). Not every pair: the
structure-only morph at λ = 1 prunes without retraining and leaves the model at chance, where
the ADC bits no longer change anything."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from cimc.sweep.run import plan_sweep, run_sweep
from cimc.sweep.store import read_records

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sweep.toml"
RESULTS = ("compiled_top1", "latency_cycles", "reload_cycles_per_inference", "bitlines", "macros", "macro_usage",
           "adc_conversions", "params", "segments", "fits_on_chip")


def _results(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(json.dumps(record.get(name), sort_keys=True) for name in RESULTS)


def changed_pairs(records: list[dict[str, Any]], axis: str) -> tuple[int, int]:
    """(pairs of points that differ only in ``axis``, how many of them differ in a result)."""
    pairs = changed = 0
    for a, b in itertools.combinations(records, 2):
        if {k for k in a["point"] if a["point"][k] != b["point"].get(k)} == {axis}:
            pairs += 1
            changed += _results(a) != _results(b)
    return pairs, changed


@pytest.mark.slow
def test_every_axis_of_the_example_sweep_changes_the_results(tmp_path: Path) -> None:
    plan = plan_sweep(EXAMPLE)
    out = tmp_path / "sweep.jsonl"
    summary = run_sweep(plan, out, engine="serial")
    records = read_records(out)
    assert summary.failed == 0 and len(records) == summary.points == len(plan.tasks) == 32
    accuracies = {r["compiled_top1"] for r in records}
    assert max(accuracies) > 0.9 and len(accuracies) > 1  # a trained model: accuracy is a result too
    axes = sorted(k for k in records[0]["point"] if len({json.dumps(r["point"][k]) for r in records}) > 1)
    assert axes == ["adc_bits", "bitline_budget", "macro.preset", "morph_lambda", "w_bits"]
    for axis in axes:
        pairs, changed = changed_pairs(records, axis)
        assert pairs == 16 and changed > 0, (axis, pairs, changed)


def test_changed_pairs_finds_an_axis_without_effect() -> None:
    """The check itself can fail: an axis whose points have equal results counts no change."""
    base = dict.fromkeys(RESULTS, 1)
    records = [{"point": {"w_bits": 4, "adc_bits": 5}, **base}, {"point": {"w_bits": 8, "adc_bits": 5}, **base},
               {"point": {"w_bits": 4, "adc_bits": 4}, **base, "compiled_top1": 0.5}]
    assert changed_pairs(records, "w_bits") == (1, 0)
    assert changed_pairs(records, "adc_bits") == (1, 1)
