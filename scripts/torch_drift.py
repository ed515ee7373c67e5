"""How far the two-stage evidence moves between two torch builds, and where it starts to move.

    python3 scripts/torch_drift.py probe --python python3 --python /path/to/venv/bin/python   # one net, 1 epoch
    python3 scripts/torch_drift.py probe --tiny --python python3 --python python3             # tested: zero drift
    python3 scripts/torch_drift.py tables a.json b.json [--cache A B]                         # two evidence runs

``probe`` runs, in each interpreter (two or more, each compared with the first; ``PYTHONPATH`` set
to this checkout), the float stage of ``scripts/two_stage_evidence.py`` for one net and seed —
the same data (``mnist32``), the same module (``build_net``), cimc's ``fit`` with the same
epochs and learning rate, one torch thread, ``torch.use_deterministic_algorithms(True)`` — and
records what the builds can differ in,
in the order a training run meets them: the input images (bilinear upsampling is torch's),
the initial weights (torch's RNG and init functions), the first batch's logits and loss, the
weights after optimizer steps 1, 2, 3, 5, 10, 20, 50, 100, ... (an optimizer step hook) and
at the end, and the test accuracy. The table gives, for each, ``max |a − b|`` over all
elements (0 means bit-identical) and the relative difference ``max|a − b| / max|a|``.

``tables`` compares two ``--json`` files of ``two_stage_evidence.py`` run with the same options
under two builds: per net, ADC width, stage and seed the top-1 of each and the difference, and
per net, ADC width and stage the mean over seeds of ``|a − b|`` against each build's seed spread
(``max − min`` over the seeds both runs completed). With ``--cache A B`` (the two runs' ``--cache``
folders) it adds ``max |a − b|`` of the trained float weights of every cached float net.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: ``--tiny``: 128 training images, 2 optimizer steps (a few seconds; the determinism test).
TINY = {"train_size": 128, "test_size": 64, "epochs": 1}
#: Optimizer steps after which the weights are recorded (and the last step).
SNAPSHOTS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)


# --------------------------------------------------------------------------- the probe (one build)

def probe(net: str, seed: int, epochs: int, train_size: int, test_size: int, out: Path) -> None:
    """Run the float stage of the evidence for ``net``/``seed`` in this interpreter and write
    what a build can change (see the module docstring) to ``out`` (``.npz``)."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    sys.path.insert(0, str(ROOT))
    from cimc.train import TrainData, fit
    from scripts.two_stage_evidence import build_net, mnist32, parse, versions

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    args = parse(["--out", os.devnull])  # the evidence's defaults (widths, learning rates)
    train, test = mnist32("train", train_size), mnist32("test", test_size)
    data = TrainData(train, test, batch_size=64)
    torch.manual_seed(seed)
    model = build_net(net, args)
    arrays: dict[str, np.ndarray] = {"input": train.x, "step 0 (init)": _flat(model)}
    x, y = next(data.batches("train", epoch=0, seed=seed))
    with torch.no_grad():  # on a copy: the forward updates batch-norm running statistics
        logits = copy.deepcopy(model).train()(x)
    arrays["first logits"] = logits.numpy()
    arrays["first loss"] = np.array([float(torch.nn.functional.cross_entropy(logits, y))])
    step = [0]

    def record(*_: object) -> None:
        step[0] += 1
        if step[0] in SNAPSHOTS:
            arrays[f"step {step[0]}"] = _flat(model)

    handle = register_optimizer_step_post_hook(record)
    try:
        result = fit(model, data, "float", epochs=epochs, lr=args.float_lr, progress=False, seed=seed)
    finally:
        handle.remove()
    arrays[f"step {step[0]} (end)"] = _flat(model)
    arrays["test top-1"] = np.array([result["test_acc"]])
    np.savez(out, **arrays, versions=np.array(versions()))


def _flat(model: Any) -> np.ndarray:
    """Every parameter and buffer of ``model`` (state-dict order), float64, in one vector."""
    return np.concatenate([t.detach().double().reshape(-1).numpy() for t in model.state_dict().values()])


# --------------------------------------------------------------------------- comparing probes

def drift_rows(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[tuple[str, float, float]]:
    """``(quantity, max|a − b|, max|a − b| / max|a|)`` for every array both probes recorded, in
    recording order (a shape mismatch is ``inf``)."""
    rows = []
    for key in a:
        if key == "versions" or key not in b:
            continue
        x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
        if x.shape != y.shape:
            rows.append((key, float("inf"), float("inf")))
            continue
        diff = float(np.max(np.abs(x - y))) if x.size else 0.0
        scale = float(np.max(np.abs(x))) if x.size else 0.0
        rows.append((key, diff, diff / scale if scale else diff))
    return rows


def drift_markdown(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> str:
    """The probe comparison as a Markdown table (with both builds' versions)."""
    lines = [f"a: {a['versions']}", f"b: {b['versions']}", "",
             "| quantity | a | b | max abs diff | relative |", "|---|---:|---:|---:|---:|"]
    for key, diff, rel in drift_rows(a, b):
        va = f"{float(a[key][0]):.6g}" if a[key].size == 1 else f"{a[key].size} values"
        vb = f"{float(b[key][0]):.6g}" if b[key].size == 1 else f"{b[key].size} values"
        lines.append(f"| {key} | {va} | {vb} | {diff:.3g} | {rel:.3g} |")
    return "\n".join(lines) + "\n"


def run_probes(pythons: list[str], net: str, seed: int, epochs: int, train_size: int, test_size: int,
               work: Path) -> list[dict[str, np.ndarray]]:
    """``probe`` in each interpreter (a fresh process each, all at once; ``PYTHONPATH`` = this checkout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = [work / f"probe{i}.npz" for i in range(len(pythons))]
    processes = [subprocess.Popen([python, str(Path(__file__).resolve()), "_probe", "--net", net, "--seed", str(seed),
                                   "--epochs", str(epochs), "--train-size", str(train_size),
                                   "--test-size", str(test_size), "--out", str(out)], env=env)
                 for python, out in zip(pythons, outs, strict=True)]
    failed = [python for python, process in zip(pythons, processes, strict=True) if process.wait() != 0]
    if failed:
        raise SystemExit(f"the probe failed under {', '.join(failed)} (the error is above)")
    loaded = []
    for out in outs:
        with np.load(out) as npz:
            loaded.append({k: npz[k] for k in npz.files})
    return loaded


# --------------------------------------------------------------------------- comparing evidence runs

#: ``two_stage_evidence.py`` options that do not change a (net, seed)'s figures.
_NOT_BUDGET = ("cache", "progress", "nets", "seeds")


def _accuracies(path: Path) -> dict[tuple[str, int, str, int], float]:
    """``(net, ADC bits, stage, seed) -> top-1 %`` of a ``two_stage_evidence.py --json`` file."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {(net, int(adc), stage, int(seed)): 100 * float(value)
            for net, per_seed in raw["results"].items() for seed, rows in per_seed.items()
            for adc, row in rows.items() for stage, value in row.items()}


def tables_markdown(path_a: Path, path_b: Path) -> str:
    """Per (net, ADC, stage): each seed's top-1 under a and b, the mean ``|a − b|`` over the
    seeds and the seed spread (``max − min`` over seeds) of each build."""
    raw_a, raw_b = (json.loads(p.read_text(encoding="utf-8")) for p in (path_a, path_b))
    budget_a, budget_b = ({k: v for k, v in raw["args"].items() if k not in _NOT_BUDGET} for raw in (raw_a, raw_b))
    if budget_a != budget_b:
        raise SystemExit(f"the two runs have other options: {budget_a} vs {budget_b}")
    a, b = _accuracies(path_a), _accuracies(path_b)
    seeds = sorted({k[3] for k in a if k in b})  # a partial run lacks some (net, seed) pairs
    nets = list(raw_a["results"])  # the script's order
    groups = sorted({k[:3] for k in a if k in b}, key=lambda g: (nets.index(g[0]), -g[1], _stage_order(g[2])))
    head = " | ".join(f"seed {s}: a / b (b − a)" for s in seeds)
    lines = [f"a: {raw_a['versions']}", f"b: {raw_b['versions']}", "",
             f"| net | ADC | stage | {head} | mean abs diff | seed spread a | seed spread b |",
             "|---|---:|---|" + "---:|" * (len(seeds) + 3)]
    for net, adc, stage in groups:
        both = [s for s in seeds if (net, adc, stage, s) in a and (net, adc, stage, s) in b]
        va, vb = ([run[(net, adc, stage, s)] for s in both] for run in (a, b))
        pairs = dict(zip(both, zip(va, vb, strict=True), strict=True))
        cells = [f"{pairs[s][0]:.1f} / {pairs[s][1]:.1f} ({pairs[s][1] - pairs[s][0]:+.1f})" if s in pairs else "–"
                 for s in seeds]
        mean_abs = statistics.mean(abs(y - x) for x, y in pairs.values())
        lines.append(f"| {net} | {adc} | {stage} | " + " | ".join(cells)
                     + f" | {mean_abs:.1f} | {max(va) - min(va):.1f} | {max(vb) - min(vb):.1f} |")
    return "\n".join(lines) + "\n"


def _stage_order(stage: str) -> int:
    order = ("float", "naive PTQ", "calibrated PTQ", "phase 1", "phase 1 + cal. ADC", "phase 2")
    return order.index(stage) if stage in order else len(order)


def cache_markdown(cache_a: Path, cache_b: Path) -> str:
    """``max |a − b|`` of the initializers of every float ONNX file both caches hold."""
    import onnx
    from onnx import numpy_helper

    lines = ["| cached float net | weights | max abs diff | relative |", "|---|---:|---:|---:|"]
    for path in sorted(cache_a.glob("*.onnx")):
        other = cache_b / path.name
        if not other.is_file():
            continue
        wa, wb = ({i.name: numpy_helper.to_array(i).astype(np.float64) for i in onnx.load(p).graph.initializer}
                  for p in (path, other))
        common = sorted(set(wa) & set(wb))
        if [wa[k].shape for k in common] != [wb[k].shape for k in common] or len(common) != len(wa):
            lines.append(f"| {path.stem} | – | other graphs | – |")
            continue
        x = np.concatenate([wa[k].reshape(-1) for k in common])
        y = np.concatenate([wb[k].reshape(-1) for k in common])
        diff = float(np.max(np.abs(x - y)))
        lines.append(f"| {path.stem} | {x.size} | {diff:.3g} | {diff / float(np.max(np.abs(x))):.3g} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line

def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="run the float stage under each interpreter and compare")
    p.add_argument("--python", action="append", required=True,
                   help="an interpreter (two or more: each is compared with the first)")
    for q in (p, inner := sub.add_parser("_probe", help="(internal) one interpreter's probe")):
        q.add_argument("--net", default="vgg9", choices=("vgg9", "resnet18", "mobilenet_v2", "efficientnet_b0"))
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--epochs", type=int, default=1)
        q.add_argument("--train-size", type=int, default=4000)
        q.add_argument("--test-size", type=int, default=1000)
    inner.add_argument("--out", type=Path, required=True)
    p.add_argument("--tiny", action="store_true", help=f"a tiny budget ({TINY}): seconds")
    p.add_argument("--out", type=Path, help="also write the table here")
    t = sub.add_parser("tables", help="compare two --json files of two_stage_evidence.py")
    t.add_argument("json", type=Path, nargs=2)
    t.add_argument("--cache", type=Path, nargs=2, help="the two runs' --cache folders")
    t.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "probe":
        if len(args.python) < 2:
            parser.error("probe needs --python at least twice")
        if args.tiny:
            vars(args).update(TINY)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.command == "_probe":
        probe(args.net, args.seed, args.epochs, args.train_size, args.test_size, args.out)
        return
    if args.command == "probe":
        with tempfile.TemporaryDirectory() as tmp:
            first, *others = run_probes(args.python, args.net, args.seed, args.epochs, args.train_size,
                                        args.test_size, Path(tmp))
        text = (f"{args.net}, seed {args.seed}, float stage: {args.epochs} epoch(s) on {args.train_size} "
                "images\n\n" + "\n".join(drift_markdown(first, other) for other in others))
    else:
        text = tables_markdown(*args.json)
        if args.cache:
            text += "\n" + cache_markdown(*args.cache)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
