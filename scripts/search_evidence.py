"""Evidence for ``cimc search``: searched per-layer bits against uniform 4-bit and 8-bit.

    python3 scripts/search_evidence.py            # a few minutes on two CPU cores
    python3 scripts/search_evidence.py --quick    # fewer samples, episodes and evaluations

Models: the digits CNN trained for a few seconds (``cimc.search.demo``; accuracy on 256
held-out digits, drop against the float model ≤ 1 pp) and the untrained zoo VGG9 and
ResNet18 (top-1 agreement with the float model on synthetic images, drop ≤ 5 pp). Macro:
the paper's (4-bit cells and DACs, 5-bit ADC); weights/inputs wider than 4 bits are
bit-sliced. Objective: cycles per inference (computing + weight loading, the compile
path's cost model). Prints a Markdown table and writes benchmarks/results/search_evidence.md.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from cimc.api import CompileOptions
from cimc.search import ProblemSpec, SearchProblem, build_problem, greedy_search, rl_search
from cimc.search.demo import train_digits_onnx
from cimc.search.problem import Point

log = logging.getLogger("search_evidence")
OUT = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "search_evidence.md"


def cell(point: Point, eight: Point) -> str:
    return f"{point.latency / eight.latency:.3f}× / {100 * point.metric:.1f}%"


def row(name: str, prob: SearchProblem, args: argparse.Namespace) -> str:
    start = time.perf_counter()
    eight, four = prob.uniform(8, 8), prob.uniform(4, 4)
    greedy = greedy_search(prob, max_evals=args.max_evals)
    n_greedy = len(prob.history)
    rl = rl_search(prob, episodes=args.episodes, seed=0)
    seconds = time.perf_counter() - start
    log.info("%s: %d evaluations, %.0f s", name, len(prob.history), seconds)
    return (f"| {name} | {prob.proxy.metric} | {len(prob.space.layers)} | {100 * prob.proxy.reference:.1f}% | "
            f"{prob.max_drop:g} | {eight.latency:,} / {100 * eight.metric:.1f}% | {cell(four, eight)} | "
            f"{cell(greedy, eight)}{'' if greedy.feasible else ' (infeasible)'} | "
            f"{cell(rl, eight)}{'' if rl.feasible else ' (infeasible)'} | {n_greedy} + {len(prob.history) - n_greedy} "
            f"| {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="+", default=["digits", "vgg9", "resnet18"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("cimc.quant.calibration").setLevel(logging.ERROR)  # synthetic calibration warning
    args.episodes, args.max_evals = (12, 24) if args.quick else (30, 60)
    zoo_eval, digits_eval = (16, 128) if args.quick else (32, 256)
    lines = ["| model | metric | CIM layers | float | max drop (pp) | uniform 8-bit: cycles / metric | "
             "uniform 4-bit: cycles vs 8-bit / metric | greedy | RL (DDPG) | evaluations (greedy + RL) | s |",
             "|" + "---|" * 11]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if name == "digits":
                source, spec = train_digits_onnx(Path(tmp) / "digits.onnx"), ProblemSpec(
                    data="digits", max_drop=1.0, eval_size=digits_eval, options=CompileOptions(calib_size=64))
            else:
                source, spec = Path(name), ProblemSpec(data="synthetic", max_drop=5.0, eval_size=zoo_eval,
                                                       options=CompileOptions(calib_size=16))
            lines.append(row("digits_cnn (trained)" if name == "digits" else name,
                             build_problem(str(source), spec), args))
    text = "\n".join(lines)
    note = ("\nCells: cycles per inference relative to uniform 8-bit / metric. Macro 'paper' (4-bit cells, "
            "4-bit DAC, 5-bit ADC); candidates w {2,3,4,5,6,8}, a {2,3,4,6,8}"
            f"{'; --quick' if args.quick else ''}.\n")
    print(text + "\n" + note)
    OUT.write_text(text + "\n" + note, encoding="utf-8")


if __name__ == "__main__":
    main()
