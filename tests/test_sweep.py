"""``cimc sweep``: config validation, expansion, keys, pool runs vs direct compiles, resume, Pareto."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cimc import __version__
from cimc.api import CompileOptions, compile_model
from cimc.cli.main import main
from cimc.errors import UsageError
from cimc.macro import FIELD_BOUNDS
from cimc.pareto import nondominated
from cimc.sweep import engines
from cimc.sweep.config import Range, parse_config
from cimc.sweep.pareto import pareto
from cimc.sweep.point import Task
from cimc.sweep.run import plan_from_config, plan_sweep, run_sweep
from cimc.sweep.space import expand, point_key
from cimc.sweep.store import read_records
from tests.sweep_helpers import without_time, write_config

MODEL = {"model": "digits_cnn"}


@pytest.mark.parametrize(("doc", "words"), [
    ({**MODEL, "colour": 1}, "unknown key(s) colour"),
    ({**MODEL, "axes": {"w_bitz": [4]}}, "unknown axis 'axes.w_bitz'"),
    ({**MODEL, "axes": {"w_bits": []}}, "axes.w_bits is an empty list"),
    ({**MODEL, "axes": {"w_bits": 4}}, "axes.w_bits must be a list"),
    ({**MODEL, "axes": {"w_bits": ["4"]}}, "axes.w_bits[0] = '4' must be an integer"),
    ({**MODEL, "axes": {"macro": {"bitlines": [True]}}}, "axes.macro.bitlines[0] = True"),
    ({**MODEL, "axes": {"macro": {"preset": ["nope"]}}}, "axes.macro.preset[0] = 'nope' is not one of"),
    ({**MODEL, "axes": {"morph_lambda": [-1]}}, "axes.morph_lambda[0] = -1 must be a number >= 0"),
    ({**MODEL, "axes": {"morph_lambda": [0.5]}}, "morph_lambda needs a bitline_budget"),
    ({**MODEL, "axes": {"w_bits": {"min": 2, "max": 8}}}, "axes.w_bits must be a list"),
    ({**MODEL, "mode": "random"}, "needs samples"),
    ({**MODEL, "mode": "random", "samples": 2, "axes": {"w_bits": {"min": 8, "max": 2}}}, "numeric min < max"),
    ({**MODEL, "axes": {"w_bits": [4]}, "fixed": {"w_bits": 8}}, "w_bits is both an axis and fixed"),
    ({**MODEL, "training": {"epochz": 1}}, "training.epochz"),
    ({**MODEL, "objective": "speed"}, "objective = 'speed' is not one of"),
    ({"model": "no_such_model"}, "neither a zoo model nor a file"),
    ({**MODEL, "mode": "spiral"}, "mode = 'spiral' is not one of"),
])
def test_config_errors_name_the_key(doc: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError, match=None) as info:
        parse_config(doc)
    assert words in str(info.value)


@pytest.mark.parametrize(("field", "value"), [("bitlines", 10**18), ("wordlines", 65_537), ("psum_buffer", 2**41),
                                            ("load_cycles", 2**33), ("adc_bits", 17), ("adc_pj", 1e7),
                                            ("offchip_pj", float("inf"))])
def test_sweep_macro_fields_have_an_upper_bound(field: str, value: Any) -> None:
    """A sweep config is untrusted: every numeric macro field is held to ``cimc.macro.FIELD_BOUNDS``,
    as an axis value, a random range's end or a fixed value, before any point runs."""
    for doc in ({**MODEL, "axes": {"macro": {field: [value]}}},
                {**MODEL, "mode": "random", "samples": 2, "axes": {"macro": {field: {"min": 1, "max": value}}}},
                {**MODEL, "fixed": {"macro": {field: value}}}):
        with pytest.raises(UsageError, match=f"sweep config: [a-z]+.macro.{field}[^ ]* = .* must be an? [a-z]+ in "):
            parse_config(doc)
    parse_config({**MODEL, "axes": {"macro": {field: [FIELD_BOUNDS[field][1]]}}})  # the ceiling itself is allowed


def test_bad_config_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'model = "digits_cnn"\n[axes]\nw_bits = []\n')
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["sweep", str(config), "-o", str(out)])
    assert result.exit_code == 2
    assert "axes.w_bits is an empty list" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]


def test_grid_expansion_order_and_fixed() -> None:
    config = parse_config({**MODEL, "fixed": {"bitline_budget": 512},
                           "axes": {"w_bits": [4, 8], "macro": {"preset": ["paper", "small-64"], "adcs": [16, 32]}}})
    points = expand(config)
    assert len(points) == 8
    assert points[0] == {"bitline_budget": 512, "w_bits": 4, "macro.preset": "paper", "macro.adcs": 16}
    assert points[1]["macro.adcs"] == 32 and points[2]["macro.preset"] == "small-64"  # last axis fastest
    assert points[4]["w_bits"] == 8
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 8


def test_random_expansion_is_deterministic() -> None:
    doc = {**MODEL, "mode": "random", "samples": 5,
           "axes": {"w_bits": [2, 4, 6, 8], "adc_bits": [3, 4, 5], "bitline_budget": [256, 512]}}
    first, again = expand(parse_config(doc)), expand(parse_config(doc))
    other = expand(parse_config({**doc, "seed": 1}))
    assert first == again and first != other
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 5  # drawn without replacement
    grid = expand(parse_config({**doc, "mode": "grid", "samples": None} | {"samples": 1}))
    assert all(p in grid for p in first)
    assert len(expand(parse_config({**doc, "samples": 100}))) == 24  # capped at the grid


def test_random_ranges_stay_in_bounds() -> None:
    config = parse_config({**MODEL, "mode": "random", "samples": 50, "fixed": {"bitline_budget": 512},
                           "axes": {"morph_lambda": {"min": 0.0, "max": 2.0}, "w_bits": {"min": 2, "max": 8}}})
    assert config.axes["w_bits"] == Range(2, 8, True)
    points = expand(config)
    lam = np.array([p["morph_lambda"] for p in points])
    bits = np.array([p["w_bits"] for p in points])
    assert lam.min() >= 0 and lam.max() <= 2 and len(set(lam)) > 40
    assert bits.min() >= 2 and bits.max() <= 8 and all(isinstance(b, int) for b in bits.tolist())


def test_point_key_stable_and_sensitive() -> None:
    point = {"w_bits": 4, "macro.preset": "paper", "morph_lambda": 0.5, "bitline_budget": 512}
    settings = {"eval": None, "calib": "synthetic"}
    model = {"kind": "zoo", "name": "tiny_cnn", "sha256": "ab" * 32}
    doc = ('{"cimc":"' + __version__ + '","model":{"kind":"zoo","name":"tiny_cnn","sha256":"' + "ab" * 32
           + '"},"point":{"bitline_budget":512,"macro.preset":"paper","morph_lambda":0.5,"w_bits":4},'
           '"settings":{"calib":"synthetic","eval":null}}')
    key = point_key(point, settings, model)
    assert key == hashlib.sha256(doc.encode()).hexdigest()  # independent canonical JSON
    assert point_key(dict(reversed(point.items())), settings, model) == key
    changed = [{**point, "w_bits": 8}, {**point, "macro.preset": "small-64"}, {**point, "morph_lambda": 0.25},
               {**point, "bitline_budget": 256}, {**point, "adc_bits": 4}]
    keys = {point_key(p, settings, model) for p in changed}
    keys |= {point_key(point, {**settings, "eval": "digits"}, model),
             point_key(point, settings, {**model, "sha256": "cd" * 32}), point_key(point, settings, model, "9.9")}
    assert len(keys) == 8 and key not in keys


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return plan_sweep(write_config(tmp_path_factory.mktemp("cfg")))


def test_pool_sweep_equals_direct_compile(plan: Any, tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    summary = run_sweep(plan, out, engine="pool", workers=2)
    assert (summary.points, summary.evaluated, summary.failed) == (4, 4, 0)
    records = {r["key"]: r for r in read_records(out)}
    assert set(records) == {t.key for t in plan.tasks}
    for task in plan.tasks[:2]:  # w_bits 4 on both presets
        rec = records[task.key]
        options = CompileOptions(macro=task.point["macro.preset"], w_bits=task.point["w_bits"], calib="digits",
                                 calib_size=16, eval_data="digits", eval_size=120)
        direct = compile_model("digits_cnn", tmp_path / task.key[:8], options)
        cost = direct.cost
        for name in ("bitlines", "macros", "macro_usage", "computing_cycles", "loading_cycles", "adc_conversions",
                     "params", "fits_on_chip"):
            assert rec[name] == getattr(cost, name), name
        assert rec["latency_cycles"] == cost.loading_cycles + cost.computing_cycles
        acc = direct.report["accuracy"]
        assert (rec["compiled_top1"], rec["float_top1"], rec["agreement"]) == (
            acc["compiled_top1"], acc["float_top1"], acc["agreement"])


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = engines.evaluate_point

    def counted(blob: Any, task: Task) -> dict[str, Any]:
        seen.append(task.key)
        return real(blob, task)

    monkeypatch.setattr(engines, "evaluate_point", counted)
    return seen


def test_resume_redoes_only_missing(plan: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _counting(monkeypatch)
    out = tmp_path / "s.jsonl"
    run_sweep(plan, out, engine="serial")
    assert len(seen) == 4
    lines = out.read_bytes().splitlines(keepends=True)
    first = without_time([json.loads(line) for line in lines])
    dropped, torn = json.loads(lines[1])["key"], json.loads(lines[3])["key"]
    out.write_bytes(lines[0] + lines[2] + lines[3][:40])  # a deleted line and a torn last line
    seen.clear()
    summary = run_sweep(plan, out, engine="serial")
    assert sorted(seen) == sorted([dropped, torn]) and summary.skipped == 2
    again = read_records(out)
    assert len(again) == 4 and without_time(again) == first
    seen.clear()
    assert run_sweep(plan, out, engine="serial").evaluated == 0 and not seen


def test_failing_point_is_recorded(tmp_path: Path) -> None:
    config = parse_config({**MODEL, "axes": {"adc_bits": [5, 8], "macro": {"bitlines": [256, 512]}}})
    out = tmp_path / "s.jsonl"
    summary = run_sweep(plan_from_config(config), out, engine="serial")
    assert summary.failed == 3
    by_point = {(r["point"]["adc_bits"], r["point"]["macro.bitlines"]): r for r in read_records(out)}
    assert by_point[5, 256]["status"] == "ok"
    assert by_point[8, 256]["error"]["kind"] == "mapping-infeasible"  # 8-bit codes on a 5-bit ADC
    assert "ADC" in by_point[8, 256]["error"]["message"]
    assert by_point[5, 512]["error"]["kind"] == "usage"  # 64 ADCs × 4 cannot serve 512 bitlines
    assert "bitlines" not in by_point[5, 512]


def test_pareto_by_hand() -> None:
    costs = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [2, 2], [1, 6], [6, 6]])
    # [3,3] and [6,6] are dominated by [2,2]; [1,6] by [1,5]; the equal [2,2] pair both stay
    assert nondominated(costs).tolist() == [True, True, True, False, True, False, False]
    recs = [{"key": str(i), "status": "ok", "compiled_top1": a, "latency_cycles": lat, "macro_usage": u}
            for i, (a, lat, u) in enumerate([(0.9, 100, 0.5), (0.8, 100, 0.5), (0.7, 50, 0.4), (0.9, 100, 0.6)])]
    recs.append({"key": "x", "status": "error"})
    ok, front, objs = pareto(recs)
    assert len(ok) == 4 and objs[0] == ("compiled_top1", "max")
    assert [r["key"] for r in front] == ["2", "3"]
    no_acc = [{**r, "compiled_top1": None, "bitlines": b} for r, b in zip(recs[:4], [10, 15, 30, 20], strict=True)]
    _, front, objs = pareto(no_acc)
    assert objs[1] == ("bitlines", "min") and [r["key"] for r in front] == ["0", "2", "3"]


def test_cli_sweep_and_report(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'model = "tiny_cnn"\n[axes]\nbitline_budget = [64, 512]\n'
                                    '[axes.macro]\npreset = ["paper", "small-64"]\n')
    out = tmp_path / "r" / "s.jsonl"
    result = CliRunner().invoke(main, ["--json", "sweep", str(config), "-o", str(out), "--engine", "serial"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    assert doc["run"]["evaluated"] == 4 and (doc["ok"], doc["failed"]) == (3, 1)  # 64 bitlines < one paper macro
    assert (tmp_path / "r" / "pareto.png").stat().st_size > 0
    assert doc["objectives"][1] == ["bitlines", "min"]
    plot = tmp_path / "p.png"
    shown = CliRunner().invoke(main, ["sweep", "--report", str(out), "--plot", str(plot)])
    assert shown.exit_code == 0, shown.output
    assert "Pareto set" in shown.output and plot.stat().st_size > 0
    both = CliRunner().invoke(main, ["sweep", str(config), "--report", str(out)])
    assert both.exit_code == 2


def test_report_skips_successful_records_without_their_figures(tmp_path: Path) -> None:
    """A results file is untrusted: an edited "ok" record lacking a figure (or holding text, NaN)
    is skipped with a warning, not an internal error of ``cimc sweep --report``."""
    good = {"key": "a", "status": "ok", "point": {"w_bits": 4}, "latency_cycles": 10, "loading_cycles": 4,
            "computing_cycles": 6, "bitlines": 8, "macros": 1, "macro_usage": 0.5, "fits_on_chip": True,
            "compiled_top1": None, "float_top1": None}
    bad = [{k: v for k, v in good.items() if k != "latency_cycles"}, {**good, "bitlines": "8"},
           {**good, "macro_usage": float("nan")}, {**good, "compiled_top1": 0.9}, {**good, "point": [4]}]
    lines = [good, *({**r, "key": f"b{i}"} for i, r in enumerate(bad)), {"key": "c", "status": "error"}]
    out = tmp_path / "s.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    assert [r["key"] for r in read_records(out)] == ["a", "c"]
    result = CliRunner().invoke(main, ["--json", "sweep", "--report", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert (doc["ok"], doc["failed"], [r["key"] for r in doc["pareto"]]) == (1, 1, ["a"])


def test_the_objective_changes_the_pareto_set(tmp_path: Path) -> None:
    """digits_cnn on 4 small-64 macros at batch 4: ``overlap`` hides loads (fewer cycles per
    inference) but computes in half passes (more partial-sum traffic, more energy), on the same
    placement (same bitlines and usage): each objective keeps exactly one of the two points, and
    the records hold the figures a compiled build reports."""
    fixed = {"macro": {"preset": "small-64"}, "bitline_budget": 256, "infer_batch": 4}
    config = parse_config({**MODEL, "fixed": fixed, "axes": {"timing": ["paper", "overlap"]}, "objective": "energy"})
    assert config.objective == "energy"
    out = tmp_path / "s.jsonl"
    run_sweep(plan_from_config(config), out, engine="serial")
    records = read_records(out)
    fronts = {o: [r["point"]["timing"] for r in pareto(records, o)[1]] for o in ("batch-latency", "energy")}
    assert fronts == {"batch-latency": ["overlap"], "energy": ["paper"]}
    assert pareto(records, "energy")[2][0] == ("energy_pj", "min")
    rec = next(r for r in records if r["point"]["timing"] == "overlap")
    report = compile_model("digits_cnn", tmp_path / "b", CompileOptions(macro="small-64", bitline_budget=256,
                                                                        infer_batch=4, timing="overlap")).report
    assert rec["cycles_per_inference"] == report["latency"]["cycles_per_inference"]
    assert rec["energy_pj"] == pytest.approx(report["energy"]["total"])
    result = CliRunner().invoke(main, ["--json", "sweep", "--report", str(out), "--objective", "batch-latency",
                                       "--no-plot"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    assert [r["point"]["timing"] for r in doc["pareto"]] == ["overlap"]
