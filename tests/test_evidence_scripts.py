"""The README's evidence scripts run, and the figures the docs quote are the ones they print
(issue 17, point 4; the QAT, PTQ, two-stage, real- and light-model scripts have tests of their own:
``test_train_cli``, ``test_two_stage_evidence``, ``test_real_models``, ``test_light_models``).

* ``scripts/qdq_real_scales.py``: every "differing X of Y" count is the README's;
* ``scripts/convtranspose_cost.py``: every figure of docs/architecture.md's ConvTranspose table;
* ``scripts/morph_table.py`` (torch: the zoo models are exported from torch's seeded
  initialisation): VGG9's rows are the README's morph table rows;
* ``scripts/search_evidence.py --tiny`` and ``scripts/ptq_evidence.py --tiny`` (torch, slow: about
  a minute each on a loaded 2-core machine) run end to end into ``tmp_path`` and write tables
  whose figures agree with each other and name the library versions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import convtranspose_cost, qdq_real_scales

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_qdq_real_scales_counts_are_the_readme_s(capsys: pytest.CaptureFixture[str]) -> None:
    qdq_real_scales.main()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(qdq_real_scales.BUILDS)
    prose = " ".join(README.split())  # the README wraps its lines
    for line in lines:
        counts = re.search(r"differing ([\d,]+) of ([\d,]+)", line)
        assert counts is not None, line
        assert f"{counts[1]} of {counts[2]}" in prose, line


def test_convtranspose_cost_figures_are_the_architecture_doc_s(capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["convtranspose_cost.py"])
    convtranspose_cost.main()
    printed = [_figures(line) for line in capsys.readouterr().out.splitlines()[2:]]
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc[doc.index("| layer | lowering | weights |"):].split("\n\n")[0].splitlines()[2:]
    assert [row[:5] for row in printed] == [_figures(line.split("|", 3)[3]) for line in table]


def test_two_stage_tables_are_the_results_file_s() -> None:
    """The README's two-stage tables (5-bit and 3-bit ADC, mean ± spread per net) are the rows of
    ``benchmarks/results/two_stage.md``, which ``scripts/two_stage_evidence.py --merge`` wrote, and
    the README names the versions and budget line the script wrote with them."""
    section = README[README.index("**The two stages on standard nets**"):README.index("What the script guarantees")]
    results = (ROOT / "benchmarks" / "results" / "two_stage.md").read_text(encoding="utf-8")
    summary = results[:results.index("## Every seed")]
    rows = [line for line in section.splitlines() if re.match(r"\| \w+ \| widths? ", line)]
    assert rows and rows == [line for line in summary.splitlines() if re.match(r"\| \w+ \| widths? ", line)]
    versions = results.splitlines()[2]
    assert " ".join(versions.split(";")[0].split()) in " ".join(section.split())


def _figures(line: str) -> list[int]:
    """The thousands-separated integers of a table row (labels such as "k3 s2" excluded)."""
    return [int(cell.replace(",", "")) for cell in (c.strip() for c in line.split("|"))
            if re.fullmatch(r"[\d,]+", cell)]


@pytest.mark.slow
@pytest.mark.torch
def test_morph_table_rows_are_the_readme_s(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import morph_table

    assert morph_table.main(["vgg9"]) == 0
    # the morph table's rows: a budget in column 2, the accuracy in bold in column 6 (the timeline
    # table's rows also start with a budget)
    row = re.compile(r"\| vgg9 \| [\d,]+ \| [\d,]+ \| [\d,]+ \| \d+ \| \*\*")
    printed = [line for line in capsys.readouterr().out.splitlines() if row.match(line)]
    readme = [line for line in README.splitlines() if row.match(line)]
    assert len(printed) == len(readme) == 4
    assert [p.split("|")[1:10] for p in printed] == [r.split("|")[1:10] for r in readme]


def _run_script(script: str, *args: str) -> None:
    """Run ``scripts/<script>`` in a subprocess (its torch settings stay out of this process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _versions_in(text: str) -> None:
    """``text`` names the torch, numpy and onnxruntime versions of this process."""
    import numpy
    import onnxruntime
    import torch

    for name, version in (("torch", torch.__version__), ("numpy", numpy.__version__),
                          ("onnxruntime", onnxruntime.__version__)):
        assert f"{name} {version}" in text, name


def _percent(cell: str) -> float:
    return float(cell.strip().rstrip("%"))


@pytest.mark.slow
@pytest.mark.torch
def test_search_evidence_tiny_run_writes_a_consistent_table(tmp_path: Path) -> None:
    """``search_evidence.py --tiny``: one digits row whose figures agree with each other (the
    feasible searched points lose at most ``max drop`` against the float metric, uniform 4-bit
    costs fewer cycles than 8-bit, the evaluation count is the sum of greedy and RL's), and the
    versions it ran with; the committed results file is left alone."""
    committed = (ROOT / "benchmarks" / "results" / "search_evidence.md").read_bytes()
    out = tmp_path / "search.md"
    _run_script("search_evidence.py", "--tiny", "--out", str(out))
    text = out.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| digits_cnn")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert len(cells) == 11
    reference, max_drop = _percent(cells[3]), float(cells[4])
    cycles8, metric8 = cells[5].split(" / ")
    assert int(cycles8.replace(",", "")) > 0 and 0 <= _percent(metric8) <= 100
    four = cells[6].split(" / ")
    assert 0 < float(four[0].rstrip("×")) < 1
    for searched in cells[7:9]:
        ratio, metric = searched.replace(" (infeasible)", "").split(" / ")
        assert float(ratio.rstrip("×")) > 0
        if "infeasible" not in searched:  # rounded to 0.1 point in the table
            assert reference - _percent(metric) <= max_drop + 0.1
    greedy, rl = (int(n) for n in cells[9].split(" + "))
    assert greedy >= 1 and rl >= 1
    assert "--tiny" in text
    _versions_in(text)
    assert (ROOT / "benchmarks" / "results" / "search_evidence.md").read_bytes() == committed


@pytest.mark.slow
@pytest.mark.torch
def test_ptq_evidence_tiny_run_renders_its_rows(tmp_path: Path) -> None:
    """``ptq_evidence.py --tiny``: the Markdown table is the JSON rows rendered (float in the
    header, compiled top-1 and its difference per cell), accuracies are whole images of the 64
    test images, and both files name the versions they came from."""
    committed = (ROOT / "benchmarks" / "results" / "ptq.md").read_bytes()
    out = tmp_path / "ptq.md"
    _run_script("ptq_evidence.py", "--tiny", "--cache", str(tmp_path / "cache"), "--out", str(out))
    doc = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    text = out.read_text(encoding="utf-8")
    rows = doc["rows"]
    assert [r["config"] for r in rows] == ["4/4/5, layer", "8/8/5, layer"]
    assert {r["net"] for r in rows} == {"resnet18"}
    for r in rows:
        for key in ("float", "compiled"):
            assert abs(r[key] * 64 - round(r[key] * 64)) < 1e-9
        cell = f"{100 * r['compiled']:.1f} ({100 * (r['compiled'] - r['float']):+.1f})"
        assert f"| {r['tag']} | {r['config']} | {cell} |" in text
    assert f"resnet18 (float {100 * rows[0]['float']:.1f}%)" in text
    _versions_in(text)
    _versions_in(" ".join(f"{k} {v}" for k, v in doc.items() if isinstance(v, str)))
    assert (ROOT / "benchmarks" / "results" / "ptq.md").read_bytes() == committed


@pytest.mark.torch
def test_ptq_evidence_renders_the_seed_of_the_run_and_a_several_seeds_table(tmp_path: Path) -> None:
    """``ptq_evidence.render``: the main table holds the rows of ``--seed`` only (rows without a
    seed are seed 0), the second table every (tag, net, configuration) run on several seeds with
    its per-seed cells and mean Δ ± sample standard deviation; ``--merge`` adds a previous
    ``ptq.json``'s rows and cimc versions."""
    import argparse

    from scripts import ptq_evidence

    rows = [{"tag": "t", "net": "resnet18", "config": "8/8/5, layer", "float": 0.9, "compiled": 0.85},
            {"tag": "t", "net": "resnet18", "config": "8/8/5, layer", "seed": 1, "float": 0.8, "compiled": 0.79},
            {"tag": "t", "net": "resnet18", "config": "4/4/5, layer", "seed": 1, "float": 0.8, "compiled": 0.5}]
    args = argparse.Namespace(tiny=False, seed=0, epochs=None, calib_size=256)
    text = ptq_evidence.render(rows, args, {"t": "here"})
    assert "| t | 8/8/5, layer | 85.0 (-5.0) |" in text
    assert "| t | 4/4/5, layer |" not in text  # seed 1 only
    assert "| t | resnet18 | 8/8/5, layer | 85.0 (-5.0) | 79.0 (-1.0) | -3.0 ± 2.8 |" in text
    previous = tmp_path / "old.json"
    previous.write_text(json.dumps({"cimc": {"t": "there"}, "rows": rows[:1]}), encoding="utf-8")
    (tmp_path / "cache" / "results").mkdir(parents=True)
    out = tmp_path / "ptq.md"
    ptq_evidence.main(["--collect-only", "--cache", str(tmp_path / "cache"), "--merge", str(previous),
                       "--out", str(out)])
    assert "| t | 8/8/5, layer | 85.0 (-5.0) |" in out.read_text(encoding="utf-8") and "`t` = there" in out.read_text(
        encoding="utf-8")


@pytest.mark.torch
def test_ptq_evidence_segment_rows_and_their_cost_table(tmp_path: Path) -> None:
    """``rows_macro(N)``: the paper's macro with only its wordlines cut to N (so the tiling's
    segments hold at most N rows: 3×3 kernels of 28 channels need 2 segments at 128 rows, 4 at 64);
    the cost table renders each figure with its ratio to 256 rows, from the cached costs and from
    a merged ``ptq.json``."""
    import argparse
    from dataclasses import replace

    from cimc.macro import load_macro
    from cimc.mapping.tiling import segment_bounds
    from scripts import ptq_evidence

    for rows, segments in ((256, 1), (128, 2), (64, 4)):
        macro = ptq_evidence.rows_macro(rows)
        assert macro.wordlines == rows and replace(macro, name="paper", wordlines=256) == load_macro("paper")
        assert len(segment_bounds(28, 9, macro.wordlines)) - 1 == segments
    base = {"adc_conversions": 100.0, "macros": 4.0, "cycles": 1000.0, "energy_pj": 2000.0}
    costs = {"net": {"256": base, "128": {k: 2 * v for k, v in base.items()}}}
    lines = ptq_evidence.cost_table(costs)
    assert "| net | 128 | 200 (×2.00) | 8 (×2.00) | 2,000 (×2.00) | 4.0 (×2.00) |" in lines
    previous = tmp_path / "old.json"
    previous.write_text(json.dumps({"cimc": {}, "rows": [], "costs": costs}), encoding="utf-8")
    (tmp_path / "cache" / "results" / "costs").mkdir(parents=True)
    (tmp_path / "cache" / "results" / "costs" / "other.json").write_text(json.dumps({"256": base}), encoding="utf-8")
    out = tmp_path / "ptq.md"
    rows = [{"tag": "t", "net": "resnet18", "config": "8/8/5, layer", "float": 0.9, "compiled": 0.85}]
    (tmp_path / "cache" / "results" / "t-resnet18.json").write_text(json.dumps({"cimc": "here", "rows": rows}),
                                                                    encoding="utf-8")
    ptq_evidence.collect(argparse.Namespace(merge=[previous], cache=tmp_path / "cache", out=out, tiny=False, seed=0,
                                            epochs=None, calib_size=256))
    text = out.read_text(encoding="utf-8")
    assert "| net | 128 | 200 (×2.00) |" in text and "| other | 256 | 100 (×1.00) |" in text
    assert json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["costs"]["other"] == {"256": base}


@pytest.mark.torch
def test_ptq_evidence_keeps_rows_of_longer_trained_nets_out_of_the_main_tables(tmp_path: Path) -> None:
    """Rows of nets trained with ``--fit-epochs`` (``fit_epochs`` set) never enter the main table
    (whose header floats are the 4-epoch nets') nor the several-seeds one: they get their own
    table, a single seed included, with each seed's float top-1."""
    import argparse

    from scripts import ptq_evidence

    rows = [{"tag": "t", "net": "resnet18", "config": "8/8/5, layer", "float": 0.9, "compiled": 0.85},
            {"tag": "e", "net": "resnet18", "config": "8/8/5, layer", "seed": 0, "fit_epochs": 10, "float": 0.96,
             "compiled": 0.95},
            {"tag": "e", "net": "resnet18", "config": "8/8/5, column", "seed": 1, "fit_epochs": 10, "float": 0.97,
             "compiled": 0.90}]
    args = argparse.Namespace(tiny=False, seed=0, epochs=None, calib_size=256)
    text = ptq_evidence.render(rows, args, {"t": "here", "e": "there"})
    main, _, longer = text.partition("## Nets trained longer")
    assert "resnet18 (float 90.0%)" in main and "| e |" not in main and "## Several seeds" not in main
    assert "| e | resnet18 | 8/8/5, layer | 95.0 (-1.0) | — | -1.0 |" in longer
    assert "| e | resnet18 | 8/8/5, column | — | 90.0 (-7.0) | -7.0 |" in longer
    assert "trained 10 epochs" in longer and "resnet18 seed 1 97.0%" in longer
