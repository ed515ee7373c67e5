"""The README's evidence scripts run, and the figures the docs quote are the ones they print
(issue 17, point 4; the QAT, PTQ, two-stage, real- and light-model scripts have tests of their own:
``test_train_cli``, ``test_two_stage_evidence``, ``test_real_models``, ``test_light_models``).

* ``scripts/qdq_real_scales.py``: every "differing X of Y" count is the README's;
* ``scripts/convtranspose_cost.py``: every figure of docs/architecture.md's ConvTranspose table;
* ``scripts/morph_table.py`` (torch: the zoo models are exported from torch's seeded
  initialisation): VGG9's rows are the README's morph table rows.
"""

from __future__ import annotations

import re
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


def _figures(line: str) -> list[int]:
    """The thousands-separated integers of a table row (labels such as "k3 s2" excluded)."""
    return [int(cell.replace(",", "")) for cell in (c.strip() for c in line.split("|"))
            if re.fullmatch(r"[\d,]+", cell)]


@pytest.mark.slow
@pytest.mark.torch
def test_morph_table_rows_are_the_readme_s(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import morph_table

    assert morph_table.main(["vgg9"]) == 0
    row = re.compile(r"\| vgg9 \| [\d,]+ \|")  # a budget in column 2: the morph table's rows
    printed = [line for line in capsys.readouterr().out.splitlines() if row.match(line)]
    readme = [line for line in README.splitlines() if row.match(line)]
    assert len(printed) == len(readme) == 4
    assert [p.split("|")[1:10] for p in printed] == [r.split("|")[1:10] for r in readme]
