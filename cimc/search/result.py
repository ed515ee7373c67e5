"""What a search returns and writes: every evaluated point, the Pareto set, the chosen bits.

``-o DIR`` receives

* ``search.json``: the settings, the float reference, every evaluated configuration (in
  evaluation order, with its origin), the Pareto set, the uniform references and the chosen
  configuration, scored on the ``val`` split, and under ``test`` the chosen configuration on
  the held-out test split (``null`` when the data has none: ``cimc.data.sources``);
* ``bits.json``: the chosen configuration as ``{layer: {w_bits, a_bits, adc_bits}}``, the
  format ``cimc compile --bits`` reads;
* ``pareto.png``: objective against metric, the Pareto front highlighted and the uniform
  configurations marked (matplotlib, when installed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cimc.search.pareto import best_feasible, pareto_front
from cimc.search.problem import Point, SearchProblem
from cimc.untrusted import refuse_special_output

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SearchResult:
    strategy: str
    objective: str
    max_drop: float
    metric: str
    reference: float
    layers: tuple[str, ...]
    points: tuple[Point, ...]
    pareto: tuple[Point, ...]
    best: Point | None
    uniform: dict[str, Point]
    test: dict[str, Any] | None = None  # the chosen configuration on the held-out test split
    searched: tuple[Point, ...] = ()  # the points within the candidates (``best`` is among them)

    @property
    def chosen(self) -> Point:
        """The best feasible point, else the one of least drop, among the points within the
        candidates (a uniform reference outside them is shown, never chosen)."""
        return self.best or min(self.searched or self.points, key=lambda p: (p.drop, p.latency))

    def to_json(self) -> dict[str, Any]:
        def dump(p: Point) -> dict[str, Any]:
            return p.to_json(self.layers)

        return {"version": SCHEMA_VERSION, "strategy": self.strategy, "objective": self.objective,
                "max_acc_drop_pp": self.max_drop, "metric": self.metric, "float_reference": self.reference,
                "layers": list(self.layers), "evaluated": [dump(p) for p in self.points],
                "pareto": [dump(p) for p in self.pareto], "uniform": {k: dump(p) for k, p in self.uniform.items()},
                "feasible_found": self.best is not None, "chosen": dump(self.chosen), "scored_split": "val",
                "test": self.test}


def collect(problem: SearchProblem, strategy: str, references: tuple[int, ...] = (8, 4)) -> SearchResult:
    """Evaluate the uniform references and gather everything the search saw; the chosen
    configuration is the best feasible one within the candidates."""
    uniform = {f"{b}-bit": problem.uniform(b, b) for b in references}
    points = tuple(problem.history)
    searched = tuple(p for p in points if problem.space.contains(p.config))
    result = SearchResult(strategy, problem.latency.objective, problem.max_drop, problem.proxy.metric,
                          problem.proxy.reference, problem.space.layers, points, tuple(pareto_front(points)),
                          best_feasible(searched), uniform, searched=searched)
    if problem.test is None:
        return result
    score = problem.test.score(result.chosen.config)
    test = {"split": "test", "samples": int(problem.test.y.shape[0]), "float_reference": problem.test.reference,
            "accuracy": score.accuracy, "agreement": score.agreement,
            "drop_pp": round(problem.test.drop(score), 6)}
    return replace(result, test=test)


def bits_json(result: SearchResult) -> dict[str, dict[str, int]]:
    return {n: {"w_bits": w, "a_bits": a, "adc_bits": c}
            for n, (w, a, c) in zip(result.layers, result.chosen.config, strict=True)}


def write_outputs(result: SearchResult, out: str | Path) -> list[Path]:
    """``search.json``, ``bits.json`` and (with matplotlib) ``pareto.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in (("search.json", result.to_json()), ("bits.json", bits_json(result))):
        path = out / name
        refuse_special_output(path)
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    png = plot_pareto(result, out / "pareto.png")
    return [*written, *([png] if png else [])]


def plot_pareto(result: SearchResult, path: Path) -> Path | None:
    """Objective vs metric of every point, the Pareto front as a step line, uniform marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.scatter([p.latency for p in result.points], [100 * p.metric for p in result.points], s=12, c="0.7",
               label="evaluated")
    front = list(result.pareto)
    ax.plot([p.latency for p in front], [100 * p.metric for p in front], "o-", c="tab:blue", drawstyle="steps-post",
            label="Pareto front")
    for (name, p), marker in zip(result.uniform.items(), ("s", "^", "D"), strict=False):
        ax.scatter([p.latency], [100 * p.metric], marker=marker, s=60, c="tab:red", label=f"uniform {name}", zorder=3)
    ax.scatter([result.chosen.latency], [100 * result.chosen.metric], marker="*", s=160, c="tab:green",
               label="chosen", zorder=4)
    ax.axhline(100 * result.reference - result.max_drop, ls="--", c="0.4", lw=0.8, label="constraint")
    ax.set_xlabel(result.objective)
    ax.set_ylabel(f"{result.metric} (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    refuse_special_output(path)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
