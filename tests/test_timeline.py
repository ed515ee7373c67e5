"""The timeline (``cimc.cost.timeline``), its energy and its ``cimc validate`` check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cimc.api import CompileOptions, compile_graph, load_source
from cimc.backend.schedule import timeline_document
from cimc.check.timeline import timeline_violations
from cimc.cli.main import main
from cimc.cost.energy import COMPONENTS, batch_energy, energy, event_counts
from cimc.cost.model import model_cost
from cimc.cost.timeline import LayerWork, TimelineResult, timeline, timeline_of
from cimc.documents.schedule import Timeline
from cimc.emulator.validate import validate_build
from cimc.errors import ResourceLimitError, UsageError
from cimc.macro import PRESETS, MacroSpec
from cimc.passes.pipelines import MAPPING
from tests.map_builds import build, copy_build, read_json, rehash, write_json

BL = 8


def _works(shapes: list[tuple[int, int, int, int]]) -> list[LayerWork]:
    """Packed layers on macros of ``BL`` bitlines: (segments, cout, pixels, a_slices) each."""
    works, offset = [], 0
    for i, (segments, cout, pixels, t) in enumerate(shapes):
        q = np.arange(segments * cout)
        works.append(LayerWork(f"l{i}", 3 * cout, pixels, t, cout, 1, tuple([3] * segments), q // cout,
                               np.zeros_like(q), q % cout, (offset + q) // BL))
        offset += segments * cout
    return works


LAYERS = st.lists(st.tuples(st.integers(1, 5), st.integers(1, 12), st.integers(1, 6), st.integers(1, 2)),
                  min_size=1, max_size=5)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(shapes=LAYERS, slots=st.integers(1, 6), batch=st.integers(1, 4), concurrent=st.integers(1, 3),
       buffer=st.sampled_from([12, 40, 1 << 20]))
def test_no_slot_double_booked_and_overlap_never_slower(shapes: list[tuple[int, int, int, int]], slots: int,
                                                        batch: int, concurrent: int, buffer: int) -> None:
    macro = MacroSpec(name="t", wordlines=8, bitlines=BL, adcs=2, load_cycles=5, concurrent_loads=concurrent,
                      psum_buffer=buffer)
    works = _works(shapes)
    results = {}
    for timing in ("paper", "overlap"):
        result = timeline_of(works, macro, slots * BL, timing, batch)
        doc = timeline_document(result, macro)
        assert timeline_violations(doc) == []
        results[timing] = result
    paper, overlap = results["paper"], results["overlap"]
    assert overlap.makespan <= paper.makespan and overlap.steady_batch_cycles <= paper.steady_batch_cycles
    if concurrent == 1:  # load, then compute, one load at a time: nothing overlaps
        assert paper.makespan == paper.load_cycles + paper.compute_cycles and paper.overlap_cycles == 0
    conversions = sum(p.phase.conversions for p in paper.phases)  # every column, pixel and input digit once
    assert conversions == batch * sum(w.column_macro.size * w.pixels * w.a_slices for w in works)


def test_energy_is_the_sum_of_its_events() -> None:
    macro = MacroSpec(name="t", wordlines=8, bitlines=BL, adcs=2, load_cycles=5, psum_buffer=12)
    result = timeline_of(_works([(4, 6, 5, 2), (2, 9, 3, 1)]), macro, 2 * BL, "paper", 3)
    counts = event_counts(result)
    assert counts.psum_accesses > 0 and counts.loads > 0 and not result.resident
    e = energy(result, macro)
    assert e.total == pytest.approx(sum(getattr(e, k) for k in COMPONENTS))
    batch = batch_energy(counts, macro)
    assert e.adc == pytest.approx(counts.conversions * macro.adc_pj / 3)
    assert e.dac == pytest.approx(counts.wordline_drives * macro.dac_bits * macro.dac_pj / 3)
    assert e.offchip == pytest.approx(counts.loads * 8 * BL * macro.cell_bits / 8 * macro.offchip_pj / 3)
    assert all(getattr(e, k) == pytest.approx(batch[k] / 3) for k in COMPONENTS)
    assert e.tops_per_w == pytest.approx(2 * result.macs / e.total)


def test_resident_weights_load_once() -> None:
    macro = MacroSpec(name="t", wordlines=8, bitlines=BL, adcs=2, load_cycles=5)
    result = timeline_of(_works([(2, 6, 5, 1), (1, 9, 3, 1)]), macro, 100 * BL, "paper", 2)
    assert result.resident and result.steady_batch_cycles == result.compute_cycles
    e = energy(result, macro)
    assert e.offchip == e.cell_write == 0 and e.initial_load > 0


def _mapped(name: str) -> tuple[object, MacroSpec]:
    options = CompileOptions(passes=("fold-batchnorm", *MAPPING))
    graph, _ = load_source(name, options)
    graph, ctx = compile_graph(graph, options)
    return graph, ctx.macro


def _cuts_a_segment(result: TimelineResult) -> bool:
    """Whether some pass holds only part of a segment (the same segment in two phases of one tile)."""
    seen = [(p.phase.layer, p.phase.first_pixel, s) for p in result.phases for s in p.phase.segments]
    return len(seen) != len(set(seen))


def _paper_equals_cost(name: str, budgets: list[int | None]) -> list[tuple[int, int]]:
    graph, macro = _mapped(name)
    steady = []
    for budget in budgets:
        cost = model_cost(graph, macro, budget)  # type: ignore[arg-type]
        paper = timeline(graph, macro, cost.bitline_budget, "paper", 1)  # type: ignore[arg-type]
        overlap = timeline(graph, macro, cost.bitline_budget, "overlap", 1)  # type: ignore[arg-type]
        if _cuts_a_segment(paper):  # a segment on more macros than slots: one DAC cycle per chunk
            assert paper.compute_cycles > cost.computing_cycles and budget is not None
            continue
        assert paper.compute_cycles == cost.computing_cycles
        assert paper.resident == cost.fits_on_chip
        if cost.fits_on_chip:
            assert (paper.load_cycles, paper.steady_batch_cycles) == (cost.loading_cycles, cost.computing_cycles)
        else:
            assert paper.steady_batch_cycles == cost.computing_cycles + cost.reload_cycles_per_inference
        assert overlap.steady_batch_cycles <= paper.steady_batch_cycles
        steady.append((paper.steady_batch_cycles, overlap.steady_batch_cycles))
    return steady


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_residual", "digits_cnn"])
def test_paper_timing_is_the_cost_models_count(name: str) -> None:
    _paper_equals_cost(name, [None, 256, 512])


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg9", "resnet18"])
def test_paper_timing_on_the_paper_models(name: str) -> None:
    (fits_paper, fits_overlap), (paper, overlap) = _paper_equals_cost(name, [None, 4096])
    assert fits_paper == fits_overlap and overlap < paper  # double buffering hides part of the reloads


def _doctor(folder: Path, edit: str) -> None:
    doc = read_json(folder, "schedule.json")
    tl = doc["timeline"]
    if edit == "load late":  # the first phase's macro arrives after it starts
        tl["loads"][0]["start"] = tl["phases"][0]["end"]
        tl["loads"][0]["end"] = tl["loads"][0]["start"] + tl["load_cycles"]
    elif edit == "slot double-booked":  # a later load into a slot while the first phase computes on it
        tl["loads"][-1]["slot"] = tl["phases"][0]["slots"][0]
        tl["loads"][-1]["start"] = tl["phases"][0]["start"]
        tl["loads"][-1]["end"] = tl["phases"][0]["start"] + tl["load_cycles"]
    elif edit == "phases overlap":
        tl["phases"][1]["start"] = tl["phases"][0]["start"]
    elif edit == "buffer over capacity":
        tl["phases"][0]["psum_entries"] = tl["psum_buffer"] + 1
    else:  # a total that the events do not give
        tl["totals"]["makespan"] += 1
    write_json(folder, "schedule.json", doc)


@pytest.mark.parametrize("edit", ["load late", "slot double-booked", "phases overlap", "buffer over capacity",
                                  "total"])
def test_validate_catches_a_doctored_timeline(tmp_path: Path, edit: str) -> None:
    folder = copy_build(tmp_path / "b", "digits_cnn", bitline_budget=256, timing="overlap", infer_batch=2)
    tl = Timeline.model_validate(read_json(folder, "schedule.json")["timeline"])
    assert timeline_violations(tl) == [] and len(tl.loads) > 1 and len(tl.phases) > 1
    _doctor(folder, edit)
    rehash(folder)
    found = [v for v in validate_build(folder).violations if v.check == "timeline"]
    assert found, edit
    assert timeline_violations(Timeline.model_validate(read_json(folder, "schedule.json")["timeline"]))


def test_build_records_timing_and_batch(tmp_path: Path) -> None:
    folder = copy_build(tmp_path / "b", "digits_cnn", bitline_budget=256, timing="overlap", infer_batch=2)
    manifest = read_json(folder, "manifest.json")
    assert (manifest["options"]["timing"], manifest["options"]["infer_batch"]) == ("overlap", 2)
    report = json.loads((folder / "report.json").read_text())
    assert report["latency"]["batch"] == 2 and report["energy"]["total"] > 0
    assert validate_build(folder).ok


def test_isaac_preset_adc_energy() -> None:
    assert PRESETS["isaac-128"].adc_pj == 1.67 and PRESETS["paper"].adc_pj == 0.99


def test_gantt_chart_of_a_build(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    folder = build("digits_cnn", bitline_budget=256, timing="overlap", infer_batch=2)
    out = tmp_path / "maps"
    result = CliRunner().invoke(main, ["maps", str(folder), "-o", str(out), "--timeline", "--no-overview",
                                       "--macro", "0", "--format", "png", "--format", "svg"])
    assert result.exit_code == 0, result.output
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "physical macro" in (out / "timeline.svg").read_text()


def test_html_report_has_the_timeline() -> None:
    from cimc.build.reader import read_build
    from cimc.views.html_report import html_report

    folder = build("digits_cnn", bitline_budget=256, timing="overlap", infer_batch=2)
    page = html_report(read_build(folder))
    report = json.loads((folder / "report.json").read_text())
    assert "<h2 id=timeline>Timeline</h2>" in page and "class=gantt" in page
    assert f"{report['latency']['cycles_per_inference']:,.1f} cycles per inference" in page
    tl = read_json(folder, "schedule.json")["timeline"]
    bars = len(tl["loads"]) + sum(len(p["slots"]) for p in tl["phases"])
    gantt = page[page.index("<svg class=gantt"):]
    assert len(re.findall(r"<rect (?:class='l\d+' )?x=", gantt[:gantt.index("</svg>")])) == bars


def test_refusals_are_typed() -> None:
    with pytest.raises(UsageError, match=r"adc_pj = 0 must be a number in \(0, 1,000,000\] pJ"):
        MacroSpec(adc_pj=0)
    assert MacroSpec(adc_pj=2).adc_pj == 2.0 and isinstance(MacroSpec(adc_pj=2).adc_pj, float)
    works = _works([(4, 6, 5, 1)])  # 24 columns on 3 macros of 8 bitlines: 2 passes on 2 slots
    with pytest.raises(UsageError, match="psum_buffer holds 5"):
        timeline_of(works, MacroSpec(name="t", wordlines=8, bitlines=BL, adcs=2, psum_buffer=5), 2 * BL)
    tiny = MacroSpec(name="t", wordlines=8, bitlines=BL, adcs=2, psum_buffer=6)  # one pixel per tile
    with pytest.raises(ResourceLimitError, match="compute phases"):
        timeline_of(works, tiny, 2 * BL, "paper", 60_000)


def test_batch_amortises_the_reload() -> None:
    macro = MacroSpec(name="t", wordlines=8, bitlines=BL, adcs=2, load_cycles=50)
    one, many = (timeline_of(_works([(3, 8, 4, 1), (2, 8, 4, 1)]), macro, 2 * BL, "paper", b) for b in (1, 8))
    assert len(one.loads) == len(many.loads) and not one.resident
    assert many.compute_cycles == 8 * one.compute_cycles
    assert many.steady_batch_cycles / 8 < one.steady_batch_cycles


def test_macro_parallel_conversion_by_hand() -> None:
    """One segment of 12 columns on macros of 8 bitlines (8 + 4 columns), 2 ADCs a macro, 5
    pixels: ``serial`` converts the 12 in ceil(12/2) + 1 = 7 cycles a pixel, ``macro-parallel``
    takes the busier macro's ceil(8/2) + 1 = 5; conversions and energy do not change."""
    macro = MacroSpec(name="t", wordlines=8, bitlines=BL, adcs=2, load_cycles=5)
    works = _works([(1, 12, 5, 1)])
    serial, parallel = (timeline_of(works, macro, 2 * BL, "paper", 1, c) for c in ("serial", "macro-parallel"))
    assert serial.compute_cycles == 5 * 7 and parallel.compute_cycles == 5 * 5
    assert energy(serial, macro) == energy(parallel, macro)
    two = timeline_of(_works([(1, 12, 5, 2)]), macro, 2 * BL, "paper", 1, "macro-parallel")
    assert two.compute_cycles == 2 * 5 * 5  # T = 2 input digits: twice the cycles


@settings(derandomize=True, max_examples=40, deadline=None)
@given(shapes=LAYERS, slots=st.integers(1, 6), timing=st.sampled_from(["paper", "overlap"]))
def test_macro_parallel_never_slower(shapes: list[tuple[int, int, int, int]], slots: int, timing: str) -> None:
    macro = MacroSpec(name="t", wordlines=8, bitlines=BL, adcs=2, load_cycles=5)
    works = _works(shapes)
    serial = timeline_of(works, macro, slots * BL, timing, 2)  # type: ignore[arg-type]
    parallel = timeline_of(works, macro, slots * BL, timing, 2, "macro-parallel")  # type: ignore[arg-type]
    assert timeline_violations(timeline_document(parallel, macro)) == []
    if timing == "paper":  # the same passes: phase by phase never longer
        assert [p.phase.macros for p in parallel.phases] == [p.phase.macros for p in serial.phases]
        assert all(a.end - a.start <= b.end - b.start for a, b in zip(parallel.phases, serial.phases, strict=True))
    assert parallel.compute_cycles <= serial.compute_cycles
    assert event_counts(parallel).conversions == event_counts(serial).conversions


def test_macro_parallel_build_is_recorded_and_validated(tmp_path: Path) -> None:
    default = read_json(build("digits_cnn", bitline_budget=256), "manifest.json")
    assert "conversion" not in default["options"]  # default builds keep their bytes
    folder = copy_build(tmp_path / "b", "digits_cnn", bitline_budget=256, conversion="macro-parallel")
    assert read_json(folder, "manifest.json")["options"]["conversion"] == "macro-parallel"
    report = read_json(folder, "report.json")
    assert report["latency"]["conversion"] == "macro-parallel"
    assert "macro-parallel conversion" in (folder / "report.md").read_text()
    assert validate_build(folder).ok
    doc = read_json(folder, "schedule.json")
    del doc["timeline"]["conversion"]  # the paper's count claimed for macro-parallel cycles
    write_json(folder, "schedule.json", doc)
    rehash(folder)
    found = [v.message for v in validate_build(folder).violations if v.check == "timeline"]
    assert any("conversion" in m for m in found), found
    other = copy_build(tmp_path / "c", "digits_cnn", bitline_budget=256)  # serial, not in the manifest
    doc = read_json(other, "schedule.json")
    doc["timeline"]["conversion"] = "macro-parallel"
    write_json(other, "schedule.json", doc)
    rehash(other)
    found = [v.message for v in validate_build(other).violations if v.check == "timeline"]
    assert "conversion is 'macro-parallel', the manifest says conversion = 'serial'" in found, found
