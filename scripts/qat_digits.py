"""Accuracy evidence for the QAT hook on real data (scikit-learn's 8×8 digits, no download).

    python3 scripts/qat_digits.py            # 5 seeds, about 1.5 minutes on one CPU core

Model: the zoo's ``digits_cnn`` (3×3 convs 1→32→64→64; on 256 wordlines its convs split
into 1, 2 and 3 segments of ≤ 28 input channels). Macro: 4-bit weights, 4-bit inputs,
5-bit ADC, 256 wordlines (the paper's). For every seed (model initialisation and data
order; the train/test split is fixed):

1. float: Adam at 1e-2 (the paper's seed-model rate), ``--float-epochs`` epochs;
2. naive PTQ of weights and partial sums: no training, min-max steps — ``S_W = max|W'|/7``
   (BN folded), ``S_A = max(a)/15`` and ``S_ADC = max|p|/15`` on 256 training images;
3. phase 1: LSQ weights and inputs (BN folded), Adam at 1e-3, no ADC in the loop;
   evaluated also with its ``S_ADC`` calibrated on partial-sum statistics (no training);
4. phase 2: S_W and S_A frozen, ADC in the loop, Adam at ``--lr2``.

Prints a Markdown table of test accuracies (mean ± std over seeds, and each seed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

import cimc.models as models
from cimc.frontend import import_onnx
from cimc.ir.graph import Graph
from cimc.train import TrainData, evaluate, fit, load_train_data, module_from_graph, prepare_phase
from cimc.train.module import IRModule

log = logging.getLogger("qat_digits")

ROWS = ("float", "naive PTQ (weights + partial sums)", "phase 1 (LSQ weights, inputs)",
        "phase 1 + calibrated ADC", "phase 2 (ADC-aware)")


def digits_graph(seed: int) -> Graph:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # exporter chatter
        models.export_onnx("digits_cnn", Path(tmp) / "digits.onnx", seed=seed, fresh=True)  # untrained
        return import_onnx(Path(tmp) / "digits.onnx")


def new_module(graph: Graph) -> IRModule:
    return module_from_graph(graph, nonnegative_inputs=frozenset(graph.inputs))


def one_seed(seed: int, data: TrainData, args: argparse.Namespace) -> list[float]:
    """Test accuracies of the five rows for one seed."""
    calib = data.calibration_batch(256)

    def train(module: IRModule, phase: str, epochs: int, lr: float) -> None:
        fit(module, data, phase, epochs=epochs, lr=lr, progress=args.progress, seed=seed)

    module = new_module(digits_graph(seed))
    train(module, "float", args.float_epochs, 1e-2)
    accs = [evaluate(module, data)]
    naive = new_module(module.to_graph())
    prepare_phase(naive, "2", calib, method="max")
    accs.append(evaluate(naive, data))
    prepare_phase(module, "1", calib)
    train(module, "1", args.phase1_epochs, 1e-3)
    accs.append(evaluate(module, data))
    prepare_phase(module, "2", calib)  # S_ADC from partial-sum statistics, then fixed (paper)
    accs.append(evaluate(module, data))
    train(module, "2", args.phase2_epochs, args.lr2)
    accs.append(evaluate(module, data))
    return accs


def table(results: list[list[float]], seeds: list[int]) -> str:
    head = "| model | test accuracy (mean ± std) | Δ vs float | " + " | ".join(f"seed {s}" for s in seeds) + " |"
    lines = [head, "|" + "---|" * (3 + len(seeds))]
    floats = [r[0] for r in results]
    for i, name in enumerate(ROWS):
        vals = [100 * r[i] for r in results]
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        delta = statistics.mean(vals) - 100 * statistics.mean(floats)
        cells = " | ".join(f"{v:.2f}" for v in vals)
        lines.append(f"| {name} | {statistics.mean(vals):.2f} ± {std:.2f} | {delta:+.2f} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--float-epochs", type=int, default=20)
    parser.add_argument("--phase1-epochs", type=int, default=10)
    parser.add_argument("--phase2-epochs", type=int, default=10)
    parser.add_argument("--lr2", type=float, default=1e-3, help="phase-2 learning rate (the paper: 1e-2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for 8×8 images)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    data = load_train_data("digits", batch_size=64)
    start = time.perf_counter()
    results = []
    for seed in args.seeds:
        results.append(one_seed(seed, data, args))
        log.info("seed %d: %s", seed, ", ".join(f"{100 * a:.2f}" for a in results[-1]))
    print(table(results, args.seeds))
    print(f"\n4-bit weights, 4-bit inputs, 5-bit ADC, 256 wordlines; digits_cnn segments per conv: 1, 2, 3; "
          f"{len(data.train)} train / {len(data.test)} test images; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
