"""cimc search: Pareto filter, latency = the compile's cost, proxy = the build's accuracy,
greedy and RL strategies, the CLI's files and the bits.json round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from click.testing import CliRunner

from cimc.api import CompileOptions, compile_model
from cimc.cli.main import main
from cimc.cost.objective import objective_value
from cimc.pareto import nondominated
from cimc.search import ProblemSpec, SearchProblem, build_problem, collect, greedy_search, rl_search
from cimc.search.demo import train_digits_onnx
from cimc.search.pareto import best_feasible, pareto_front
from cimc.search.space import SearchSpace

pytestmark = pytest.mark.torch  # the zoo or the training hook

EVAL = 128


class P(NamedTuple):
    latency: int
    metric: float
    feasible: bool
    config: tuple[tuple[int, int, int], ...]


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_digits_onnx(tmp_path_factory.mktemp("search") / "digits.onnx", epochs=10)


def problem(source: str | Path, max_drop: float = 1.0, **spec: object) -> SearchProblem:
    return build_problem(str(source), ProblemSpec(data="digits", max_drop=max_drop, eval_size=EVAL,
                                                  options=CompileOptions(calib_size=32), **spec))  # type: ignore[arg-type]


def test_pareto_mask_by_hand() -> None:
    lat = np.array([10, 20, 20, 30, 10, 40])
    met = np.array([0.5, 0.9, 0.9, 0.8, 0.4, 0.95])
    # 0 nondominated; 1 nondominated; 2 twin of 1; 3 dominated by 1; 4 dominated by 0; 5 best metric
    mask = nondominated(np.column_stack([lat, -np.asarray(met)]), keep_twins=False)
    assert mask.tolist() == [True, True, False, False, False, True]


def test_pareto_front_and_best() -> None:
    wide, narrow = ((8, 8, 5),), ((4, 4, 5),)
    pts = [P(20, 0.9, True, wide), P(10, 0.7, False, wide), P(20, 0.9, True, narrow), P(15, 0.6, True, wide)]
    front = pareto_front(pts)
    assert [(p.latency, p.metric) for p in front] == [(10, 0.7), (20, 0.9)]
    assert front[1].config == narrow  # of twins, the fewest bits
    assert best_feasible(pts) == pts[3]  # least latency among feasible, whatever its metric
    assert best_feasible([P(1, 1.0, False, wide)]) is None


def test_space_fractions_and_checks() -> None:
    space = SearchSpace(("a", "b"), (2, 4, 8), (2, 8), (5,))
    assert space.from_fractions([0.0, 0.0]) == (2, 2, 5)
    assert space.from_fractions([0.5, 0.49]) == (4, 2, 5)
    assert space.from_fractions([1.0, 1.0]) == (8, 8, 5)
    four = SearchSpace(("a",), (2, 3, 4, 8), (2, 8), (5,))  # index min(floor(a·n), n − 1), at the cuts too
    assert [four.from_fractions([a])[0] for a in (0.0, 0.25, 0.5, 0.75, 0.999, 1.0)] == [2, 3, 4, 8, 8, 8]
    assert four.from_fractions([-1.0, 2.0]) == (2, 8, 5) and four.from_fractions([]) == (8, 8, 5)
    assert space.size() == 36
    from cimc.errors import UsageError

    with pytest.raises(UsageError, match="within"):
        SearchSpace(("a",), (1, 4))


def test_latency_equals_full_compile(tmp_path: Path) -> None:
    prob = problem("digits_cnn")
    config = ((8, 3, 5), (5, 6, 4), (2, 8, 5))
    compiled = compile_model("digits_cnn", tmp_path / "b", CompileOptions(layer_bits=prob.space.layer_bits(config)))
    assert prob.latency.cost(config).to_dict() == compiled.cost.to_dict()
    assert prob.latency(config) == compiled.cost.computing_cycles + compiled.cost.loading_cycles
    wide, narrow = prob.latency.cost(prob.space.uniform(8, 8)), prob.latency.cost(prob.space.uniform(4, 4))
    assert wide.computing_cycles > narrow.computing_cycles  # 2 input slices, 2 weight columns per channel
    assert objective_value("conversions", wide) == wide.adc_conversions


def test_proxy_equals_build_accuracy(digits_onnx: Path, tmp_path: Path) -> None:
    prob = problem(digits_onnx)
    config = ((4, 6, 5), (3, 4, 5), (8, 2, 5))
    options = CompileOptions(layer_bits=prob.space.layer_bits(config), calib="digits", calib_size=32, no_shift=True,
                             eval_data="digits", eval_size=EVAL)
    report = compile_model(digits_onnx, tmp_path / "b", options).report["accuracy"]
    prob.evaluate(config)  # scored on the val split; the build reports the test split, never scored
    assert prob.test is not None and prob.test.score(config).accuracy == report["compiled_top1"]
    assert prob.test.reference == report["float_top1"]
    val = {row.tobytes() for row in prob.proxy.x}
    assert not any(row.tobytes() in val for row in prob.test.x)


def test_greedy_beats_uniform_8bit_within_constraint(digits_onnx: Path) -> None:
    prob = problem(digits_onnx, max_drop=1.0)
    chosen = greedy_search(prob)
    eight = prob.uniform(8, 8)
    assert chosen.feasible and chosen.drop <= 1.0
    assert prob.history[0].config == prob.space.widest() == eight.config  # the start is uniform 8/8
    assert chosen.latency < eight.latency and chosen.config != eight.config  # the search moved
    assert chosen.origin.startswith("greedy") and chosen.origin != "greedy start"
    assert best_feasible(prob.history) is not None


def test_chosen_bits_are_among_the_candidates() -> None:
    """The uniform 4-bit reference costs as little as 2-bit layers and scores better, but with
    candidates {2, 8} it is shown, never chosen: bits.json holds only candidate bits."""
    prob = problem("digits_cnn", max_drop=100.0, w_choices=(2, 8), a_choices=(2, 8))
    greedy_search(prob)
    result = collect(prob, "greedy")
    assert best_feasible(prob.history) == result.uniform["4-bit"]  # what was chosen before
    assert prob.space.contains(result.chosen.config) and result.chosen.origin.startswith("greedy")
    assert result.chosen == best_feasible([p for p in prob.history if p.origin.startswith("greedy")])


def test_rl_deterministic_and_feasible(digits_onnx: Path) -> None:
    runs = []
    for _ in range(2):
        prob = problem(digits_onnx, max_drop=5.0)
        point = rl_search(prob, episodes=10, seed=3)
        runs.append(([p.config for p in prob.history], point, prob))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    assert len(runs[0][0]) >= 3
    agent = [p for p in runs[0][2].history if p.origin.startswith("rl ") and p.feasible]
    assert agent and runs[0][1].feasible
    assert runs[0][1].latency == min(p.latency for p in agent)


def test_cli_writes_files_and_bits_round_trip(digits_onnx: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "s"
    res = runner.invoke(main, ["--json", "search", str(digits_onnx), "--data", "digits", "--max-acc-drop", "1",
                               "--eval-size", str(EVAL), "--calib-size", "32", "--max-evals", "8", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert {Path(f).name for f in doc["files"]} == {"search.json", "bits.json", "pareto.png"}
    search = json.loads((out / "search.json").read_text())
    assert search["chosen"] == doc["chosen"] and len(search["evaluated"]) >= 3
    assert all(p in search["evaluated"] for p in search["pareto"])
    res = runner.invoke(main, ["--json", "compile", str(digits_onnx), "-o", str(tmp_path / "b"), "--bits",
                               str(out / "bits.json"), "--calib", "digits", "--calib-size", "32", "--no-shift",
                               "--eval", "digits", "--eval-size", str(EVAL)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accuracy"]["compiled_top1"] == doc["test"]["accuracy"] == search["test"]["accuracy"]
    assert search["scored_split"] == "val" and doc["test"]["samples"] == EVAL
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    bits = json.loads((out / "bits.json").read_text())
    assert manifest["options"]["layer_bits"] == bits


def test_cli_usage_errors() -> None:
    res = CliRunner().invoke(main, ["search", "digits_cnn", "--data", "digits", "--w-choices", "1,4"])
    assert res.exit_code == 2 and "weight bit candidates" in res.output
    res = CliRunner().invoke(main, ["search", "nope", "--data", "digits"])
    assert res.exit_code == 2 and "zoo model" in res.output
