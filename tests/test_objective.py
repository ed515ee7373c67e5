"""The objectives (``cimc.cost.objective``): declared once, the same figures as a compiled
build's report, and a search whose pick the objective must change."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cimc.api import CompileOptions, compile_model
from cimc.cli.main import main
from cimc.cost.objective import OBJECTIVES, get_objective
from cimc.errors import UsageError
from cimc.search import ProblemSpec, SearchProblem, build_problem, greedy_search


def _problem(objective: str, **options: object) -> SearchProblem:
    """digits_cnn with weight candidates {4, 8}, inputs fixed at 4 bits, every point feasible."""
    return build_problem("digits_cnn", ProblemSpec(data="digits", max_drop=100.0, eval_size=64, objective=objective,
                                                   w_choices=(4, 8), a_choices=(4,),
                                                   options=CompileOptions(calib_size=16, **options)))  # type: ignore[arg-type]


@pytest.mark.parametrize("settings", [{"infer_batch": 8, "timing": "overlap", "bitline_budget": 256},
                                      {"infer_batch": 8}])  # reloads every batch; weights resident
def test_timeline_objectives_equal_the_builds_report(tmp_path: Path, settings: dict[str, object]) -> None:
    config = ((8, 4, 5), (4, 4, 5), (8, 4, 5))
    compiled = {}
    for objective in ("batch-latency", "energy", "edp"):
        prob = _problem(objective, **settings)
        compiled[objective] = prob.latency(config)
    build = compile_model("digits_cnn", tmp_path / "b", CompileOptions(layer_bits=prob.space.layer_bits(config),
                                                                       **settings))  # type: ignore[arg-type]
    latency, joules = build.report["latency"], build.report["energy"]
    assert latency["resident"] == ("bitline_budget" not in settings)
    assert compiled["batch-latency"] == pytest.approx(latency["cycles_per_inference"])
    assert compiled["energy"] == pytest.approx(joules["total"])
    assert compiled["edp"] == pytest.approx(joules["total"] * latency["cycles_per_inference"])


def test_the_objective_changes_the_pick() -> None:
    """digits_cnn's first conv has few output channels: 8-bit weights (two 4-bit cells per
    weight) still convert its columns in one round of 64 ADCs, so its cycles — and, with the
    weights resident at batch 8, its cycles per inference — do not change from 8 to 4 bits,
    and a greedy move must strictly lower the objective: ``batch-latency`` keeps 8 bits. Its
    conversions and cell count halve at 4 bits: ``energy`` and ``edp`` take 4."""
    picks = {}
    for objective in ("batch-latency", "energy", "edp"):
        prob = _problem(objective, infer_batch=8)
        picks[objective] = greedy_search(prob).config
        wide, narrow = prob.space.uniform(8, 4), prob.space.uniform(4, 4)
        assert prob.latency(narrow) <= prob.latency(wide)
    assert picks["batch-latency"][0][0] == 8
    assert picks["energy"][0][0] == picks["edp"][0][0] == 4
    assert picks["energy"] != picks["batch-latency"]


def test_objectives_are_declared_once() -> None:
    with pytest.raises(UsageError, match="unknown objective"):
        get_objective("speed")
    result = CliRunner().invoke(main, ["search", "digits_cnn", "--data", "digits", "--objective", "speed"])
    assert result.exit_code != 0 and all(name in result.output for name in OBJECTIVES)
