"""Mixed-precision search: per-layer weight/input bits under an accuracy constraint.

    from cimc.search import ProblemSpec, build_problem, greedy_search, rl_search, collect

    problem = build_problem("model.onnx", ProblemSpec(data="digits", max_drop=0.5))
    greedy_search(problem)                  # or rl_search(problem, episodes=40, seed=0)
    result = collect(problem, "greedy")     # every point, the Pareto set, the chosen bits

Latency from the compile path's cost model (``latency``), accuracy from the compiled
model's numpy reference on held-out data (``accuracy``); see docs/search.md.
"""

from cimc.search.greedy import greedy_search
from cimc.search.pareto import best_feasible, pareto_front
from cimc.search.problem import Point, ProblemSpec, SearchProblem, build_problem
from cimc.search.result import SearchResult, collect, write_outputs
from cimc.search.rl import rl_search
from cimc.search.space import SearchSpace

__all__ = ["Point", "ProblemSpec", "SearchProblem", "SearchResult", "SearchSpace", "best_feasible", "build_problem",
           "collect", "greedy_search", "pareto_front", "rl_search", "write_outputs"]
