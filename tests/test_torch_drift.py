"""``scripts/torch_drift.py``: the cross-build comparison of the two-stage evidence.

* the tiny probe run twice with this interpreter (two fresh processes, one torch build) is
  bit-identical at every recorded point — input images, initial weights, first logits and
  loss, weights after every recorded optimizer step, test accuracy — (slow: two processes that
  import torch and cimc), and a probe at another seed differs from it in its weights but not in
  its input images: the comparison sees a difference where there is one;
* ``drift_rows`` reports ``max |a − b|`` (0 only for identical arrays, ``inf`` for other shapes);
* ``tables`` gives per stage and seed both builds' top-1 and the difference, the mean absolute
  difference and each build's seed spread, and refuses two runs of other budgets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts import torch_drift

pytestmark = pytest.mark.torch


@pytest.mark.slow
def test_tiny_probe_is_bit_identical_within_one_build(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tiny = {"net": "vgg9", "epochs": 1, "train_size": 128, "test_size": 64}
    a, b = torch_drift.run_probes([sys.executable, sys.executable], seed=0, work=tmp_path / "a", **tiny)
    rows = torch_drift.drift_rows(a, b)
    keys = [key for key, _, _ in rows]
    assert keys[:4] == ["input", "step 0 (init)", "first logits", "first loss"]
    assert {"step 1", "step 2", "step 2 (end)", "test top-1"} <= set(keys)
    assert [(key, diff) for key, diff, _ in rows if diff != 0.0] == []
    assert a["step 0 (init)"].size > 100_000 and np.any(a["step 2"] != a["step 0 (init)"])  # it trained
    (other,) = torch_drift.run_probes([sys.executable], seed=1, work=tmp_path / "b", **tiny)
    drift = {key: diff for key, diff, _ in torch_drift.drift_rows(a, other)}
    assert drift["input"] == 0.0 and drift["step 0 (init)"] > 0.0 and drift["step 2 (end)"] > 0.0


def test_drift_rows_report_the_largest_difference() -> None:
    a = {"w": np.array([1.0, -2.0, 3.0]), "loss": np.array([0.5]), "versions": np.array("x"),
         "only a": np.zeros(2), "shape": np.zeros(3)}
    b = {"w": np.array([1.0, -2.0 + 1e-7, 3.0]), "loss": np.array([0.5]), "versions": np.array("y"),
         "shape": np.zeros(4)}
    rows = torch_drift.drift_rows(a, b)
    assert [key for key, _, _ in rows] == ["w", "loss", "shape"]
    (_, diff, rel), (_, same, _), (_, shapes, _) = rows
    assert diff == pytest.approx(1e-7) and rel == pytest.approx(1e-7 / 3)
    assert same == 0.0 and shapes == float("inf")


def _evidence(path: Path, top1: dict[int, tuple[float, float]], **budget: object) -> Path:
    """A ``two_stage_evidence.py --json`` file of vgg9: per seed (float, phase 2) at 5 bits."""
    results = {"vgg9": {str(s): {"5": {"float": f, "phase 2": p}} for s, (f, p) in top1.items()}}
    args = {"float_epochs": 3, "cache": str(path.parent / "cache"), **budget}
    path.write_text(json.dumps({"results": results, "versions": f"torch {path.stem}", "args": args}),
                    encoding="utf-8")
    return path


def test_tables_give_the_difference_and_the_seed_spread(tmp_path: Path) -> None:
    a = _evidence(tmp_path / "a.json", {0: (0.96, 0.95), 1: (0.94, 0.90)})
    b = _evidence(tmp_path / "b.json", {0: (0.96, 0.97), 1: (0.93, 0.90)}, cache="elsewhere")
    lines = torch_drift.tables_markdown(a, b).splitlines()
    assert lines[:2] == ["a: torch a", "b: torch b"]
    assert lines[-2] == "| vgg9 | 5 | float | 96.0 / 96.0 (+0.0) | 94.0 / 93.0 (-1.0) | 0.5 | 2.0 | 3.0 |"
    assert lines[-1] == "| vgg9 | 5 | phase 2 | 95.0 / 97.0 (+2.0) | 90.0 / 90.0 (+0.0) | 1.0 | 5.0 | 7.0 |"
    other = _evidence(tmp_path / "c.json", {0: (0.96, 0.95), 1: (0.94, 0.90)}, float_epochs=2)
    with pytest.raises(SystemExit, match="other options"):
        torch_drift.tables_markdown(a, other)
