"""Evidence for ``cimc search``: searched per-layer bits against uniform 4-bit and 8-bit.

    python3 scripts/search_evidence.py            # a few minutes on two CPU cores
    python3 scripts/search_evidence.py --quick    # fewer samples, episodes and evaluations
    python3 scripts/search_evidence.py --tiny --out /tmp/s.md  # digits only, 1 epoch: seconds (a test)

Models: the digits CNN trained for a few seconds (``cimc.search.demo``; accuracy on 256
held-out digits, drop against the float model ≤ 1 pp) and the untrained zoo VGG9 and
ResNet18 (top-1 agreement with the float model on synthetic images, drop ≤ 5 pp). Macro:
the paper's (4-bit cells and DACs, 5-bit ADC); weights/inputs wider than 4 bits are
bit-sliced. Objective: cycles per inference (computing + weight loading, the compile
path's cost model). Prints a Markdown table and writes benchmarks/results/search_evidence.md
(``--out`` elsewhere), with the torch, numpy and onnxruntime versions it ran with: the trained
digits CNN, hence its row, depends on the torch build (the zoo models' seeded initialisation too).
``--tiny`` (for ``tests/test_evidence_scripts.py``) trains the digits CNN for one epoch and runs a
few evaluations on 32 held-out digits: it checks the script, not the figures.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

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


def versions() -> str:
    """The library versions a run's figures came from."""
    return (f"torch {torch.__version__}, numpy {np.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"Python {platform.python_version()}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--tiny", action="store_true", help="digits only, one training epoch, a few evaluations")
    parser.add_argument("--models", nargs="+", default=None, help="digits, vgg9, resnet18 (default: all three)")
    parser.add_argument("--out", type=Path, default=OUT, help="the Markdown file written")
    args = parser.parse_args(argv)
    args.models = args.models or (["digits"] if args.tiny else ["digits", "vgg9", "resnet18"])
    args.episodes, args.max_evals = (2, 4) if args.tiny else (12, 24) if args.quick else (30, 60)
    args.epochs = 1 if args.tiny else 15
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("cimc.quant.calibration").setLevel(logging.ERROR)  # synthetic calibration warning
    zoo_eval, digits_eval = (8, 32) if args.tiny else (16, 128) if args.quick else (32, 256)
    lines = ["| model | metric | CIM layers | float | max drop (pp) | uniform 8-bit: cycles / metric | "
             "uniform 4-bit: cycles vs 8-bit / metric | greedy | RL (DDPG) | evaluations (greedy + RL) | s |",
             "|" + "---|" * 11]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if name == "digits":
                source, spec = train_digits_onnx(Path(tmp) / "digits.onnx", epochs=args.epochs), ProblemSpec(
                    data="digits", max_drop=1.0, eval_size=digits_eval, options=CompileOptions(calib_size=64))
            else:
                source, spec = Path(name), ProblemSpec(data="synthetic", max_drop=5.0, eval_size=zoo_eval,
                                                       options=CompileOptions(calib_size=16))
            lines.append(row("digits_cnn (trained)" if name == "digits" else name,
                             build_problem(str(source), spec), args))
    text = "\n".join(lines)
    note = ("\nCells: cycles per inference relative to uniform 8-bit / metric. Macro 'paper' (4-bit cells, "
            "4-bit DAC, 5-bit ADC); candidates w {2,3,4,5,6,8}, a {2,3,4,6,8}"
            f"{'; --quick' if args.quick else '; --tiny' if args.tiny else ''}. Versions: {versions()}.\n")
    print(text + "\n" + note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n" + note, encoding="utf-8")


if __name__ == "__main__":
    main()
