"""Evidence for weight-pool compression (issue 21, point 5; docs/weight-pool.md): accuracy against
effective bits per weight on a trained net, pooled vs uniform quantization.

    nice -n 10 python3 scripts/weight_pool_evidence.py          # compile every row, write the table
    python3 scripts/weight_pool_evidence.py --render            # the table again from weight_pool.json

The net is the zoo's trained ``digits_cnn`` (three 3×3 convs; sklearn digits, 8×8). Every row is
one ``cimc.api.compile_model`` on the paper's macro (256 wordlines, 4-bit cells and DACs, 5-bit
ADC) with ``calib="digits"`` (64 training images) and ``eval_data="digits"`` (the 360 test
images): float and compiled top-1 come from the build's ``report.json`` (onnxruntime on the
source model and on ``model.cim.onnx``), the pool figures from its ``weight_pool`` section.
Uniform rows: ``--w-bits B`` (effective bits ``B`` plus the 32-bit scales over the weights);
pooled rows: ``--weight-pool P --pool-vector L --pool-error-bits E`` (effective bits: indices,
kept error vectors, scales and the pool itself over the weights, ``cimc.cost.pool``). The pool
is built after training. Writes ``benchmarks/results/weight_pool.md`` and ``weight_pool.json``.

**Trained nets, with and without pool QAT** (``--nets``; the nets of ``scripts/two_stage_evidence.py``)::

    nice -n 10 python3 scripts/weight_pool_evidence.py --nets vgg9 resnet18 --cache DIR   # → weight_pool_nets.json

The float nets (seed 0) come from ``two_stage_evidence``'s cache (``--cache``, trained there when
missing: MNIST-5k at 32×32, 4,000 train / 1,000 test images). Per net, on the paper's macro
(5-bit ADC, 4-bit inputs), per-column scales, ``--no-shift``, calibration on 256 training
images and accuracy on the 1,000 test images (``model.cim.onnx`` of each build): uniform 4- and
2-bit weights by calibration (PTQ), uniform 2-bit by QAT (phases 1 and 2), and for every pool
configuration the post-training pool (``--weight-pool``: k-means on the float weights) and the
pool trained in the loop (``cimc.train`` with ``QuantConfig(weight_pool=…)``: phase 1 then phase 2,
``--phase1-epochs``/``--phase2-epochs`` at lr 1e-3, then compiled with the trained pool). Rows are
written as they finish (a partial run still renders), the configurations in ``NET_ORDER`` (every
compile first, then the trainings by priority), every net per configuration before the next;
``--qat-size N`` fine-tunes on the first ``N`` training images only (CPU time); ``--select`` runs
only some entries of ``NET_ORDER`` and ``--append`` adds their rows to the existing table (a QAT
row with another schedule than the table's names its own).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from cimc.api import CompileOptions, compile_model  # noqa: E402

log = logging.getLogger("weight_pool")

MODEL = "digits_cnn"
UNIFORM = ({"w_bits": 4}, {"w_bits": 3}, {"w_bits": 2})
POOLED = tuple({"weight_pool": p, "pool_vector": length, "pool_error_bits": e, "granularity": g}
               for g in ("layer", "column") for length in (4, 8, 16) for e in (0, 1) for p in (16, 64, 256)
               if not (length == 4 and p == 256))  # 4 binary weights have only 16 patterns
PRUNED = ({"weight_pool": 64, "pool_vector": 8, "pool_error_bits": 1, "pool_error_prune": 0.5,
           "granularity": "column"},)
OUT = ROOT / "benchmarks" / "results"


def run(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """One compile's row: the configuration, accuracy and cost figures."""
    options = CompileOptions(calib="digits", calib_size=64, eval_data="digits", force=True, **config)
    return figures(config, compile_model(MODEL, folder, options).report, folder)


def figures(config: dict[str, Any], report: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A build's row: accuracy (its report), effective bits, cells, bitlines, macros, conversions."""
    acc = report["accuracy"]
    row: dict[str, Any] = {"config": config, "float_top1": acc["float_top1"], "compiled_top1": acc["compiled_top1"],
                           "samples": acc["samples"], "emulated_bitlines": report["totals"]["bitlines"],
                           "emulated_macros": report["totals"]["macros"]}
    pool = report.get("weight_pool")
    if pool is None:
        weights = sum(x["params"] for x in report["layers"])
        layers = json.loads((folder / "quant.json").read_text())["layers"]
        scales = sum(len(x["w_step"]) for x in layers)
        w_bits = {x["w_bits"] for x in layers}
        row.update(effective_bits=max(w_bits) + 32 * scales / weights,
                   cells=sum(x["params"] * x["w_slices"] for x in report["layers"]),
                   bitlines=report["totals"]["bitlines"], macros=report["totals"]["macros"],
                   conversions=report["totals"]["adc_conversions"])
    else:
        row.update(effective_bits=pool["effective_bits_per_weight"],
                   cells=pool["pool_bitlines"] * pool["vector_length"], bitlines=pool["pool_bitlines"],
                   macros=pool["pool_macros"],
                   conversions=sum(x["adc_conversions"] for x in pool["layers"]))
    log.info("%s: %.1f%% at %.3f bits", config, 100 * row["compiled_top1"], row["effective_bits"])
    return row


def label(config: dict[str, Any]) -> str:
    if "weight_pool" not in config:
        return f"uniform {config['w_bits']}-bit"
    text = f"pool P={config['weight_pool']}, L={config['pool_vector']}, E={config['pool_error_bits']}"
    if config.get("pool_error_prune"):
        text += f", prune {config['pool_error_prune']}"
    return text + f", {config['granularity']} scale"


def markdown(rows: list[dict[str, Any]]) -> str:
    first = rows[0]
    lines = ["# Weight-pool evidence (issue 21, point 5)", "",
             f"Generated by `scripts/weight_pool_evidence.py` — numpy {np.__version__}, Python "
             f"{platform.python_version()} (the trained `{MODEL}` comes from the zoo's weights file, so no figure "
             f"depends on the torch build). Net: the zoo's trained `{MODEL}` (float top-1 "
             f"{100 * first['float_top1']:.1f}% on the {first['samples']} test images of sklearn digits). Paper macro "
             "(4-bit cells and DACs, 5-bit ADC), 4-bit inputs, calibration on 64 training images. Pools are built "
             "after training (binary k-means, seed 0; pools trained in the loop: the trained nets below). "
             "Effective bits per weight: uniform = "
             "`w_bits` + 32-bit scales over the weights; pooled = indices + kept error vectors + scales + the pool "
             "itself over the weights. Weight cells: cells holding weights (uniform: every weight's `w_slices` "
             "cells; pooled: the pool's `P · L · w_slices`, once). Bitlines on chip: the uniform build's columns, or "
             "the pool's `P · w_slices`. ADC conversions per inference: uniform one per column, segment and pixel; "
             "pooled one per pool column read per segment and pixel, shared by the outputs using it, plus one per "
             "position with a kept error vector (its column differs). Emulated "
             "columns: what the build places and the emulator computes (a pooled layer's logical columns, `L` rows "
             "each).", "",
             "| configuration | eff. bits/weight | top-1 % | weight cells | bitlines on chip (macros) | "
             "ADC conversions | emulated columns (macros) |", "|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: -r["effective_bits"]):
        lines.append(f"| {label(row['config'])} | {row['effective_bits']:.3f} | {100 * row['compiled_top1']:.1f} | "
                     f"{row['cells']:,} | {row['bitlines']:,} ({row['macros']}) | {row['conversions']:,} | "
                     f"{row['emulated_bitlines']:,} ({row['emulated_macros']}) |")
    return "\n".join(lines) + "\n"


# -- trained nets (--nets) ----------------------------------------------------------------------
#: (label, how, configuration): ``ptq`` compiles the float net, ``qat`` trains then compiles.
NET_POOLS = ({"weight_pool": 256, "pool_vector": 16, "pool_error_bits": 0},
             {"weight_pool": 256, "pool_vector": 16, "pool_error_bits": 1},
             {"weight_pool": 64, "pool_vector": 8, "pool_error_bits": 1},
             {"weight_pool": 64, "pool_vector": 16, "pool_error_bits": 0})
NET_ORDER: tuple[tuple[str, dict[str, Any]], ...] = (  # the cheap compiles first, then training by priority
    ("ptq", {"w_bits": 4}), ("ptq", {"w_bits": 2}), *(("ptq", dict(p)) for p in NET_POOLS),
    ("qat", dict(NET_POOLS[0])), ("qat", dict(NET_POOLS[1])), ("qat", {"w_bits": 2}),
    *(("qat", dict(p)) for p in NET_POOLS[2:]))
NET_CALIB = 256


def net_row(name: str, how: str, config: dict[str, Any], float_path: Path, run: Any) -> dict[str, Any]:
    """One (net, method, configuration) row: train when ``how == "qat"``, compile, measure."""
    from cimc.frontend import import_onnx
    from cimc.train import QuantConfig, TrainData, export_onnx, fit, module_from_graph, prepare_phase

    args, source = run.args, float_path
    start = time.perf_counter()
    if how == "qat":
        graph = import_onnx(float_path)
        quant = QuantConfig(w_bits=config.get("w_bits", 4), a_bits=4, adc_bits=5, granularity="column",
                            **{k: v for k, v in config.items() if k != "w_bits"})
        module = module_from_graph(graph, quant, nonnegative_inputs=frozenset(graph.inputs))
        calib = run.data.calibration_batch(NET_CALIB)
        data = run.data if args.qat_size is None else TrainData(run.data.train.take(args.qat_size), run.data.test,
                                                                 batch_size=run.data.batch_size)
        for phase, epochs in (("1", args.phase1_epochs), ("2", args.phase2_epochs)):
            prepare_phase(module, phase, calib)
            fit(module, data, phase, epochs=epochs, lr=1e-3, progress=False, seed=0)
        source = Path(tempfile.mkdtemp(dir=run.work)) / "qat.onnx"
        export_onnx(module, source)
    folder = Path(tempfile.mkdtemp(dir=run.work)) / "build"
    pool = {k: v for k, v in config.items() if k != "w_bits"}
    bits = {"w_bits": config["w_bits"]} if how == "ptq" and "w_bits" in config else {}
    options = CompileOptions(macro="paper", no_shift=True, granularity="column", eval_data=str(run.test_npz),
                             calib=str(run.calib_npz), calib_size=NET_CALIB, force=True, **pool, **bits)
    with contextlib.redirect_stdout(io.StringIO()):
        report = compile_model(source, folder, options).report
    row = figures(config, report, folder)
    row.update(net=name, how=how, seconds=time.perf_counter() - start)
    if how == "qat":
        row["qat"] = {"size": args.qat_size or args.train_size, "phase1": args.phase1_epochs,
                      "phase2": args.phase2_epochs}
    log.info("%s %s %s: %.1f%% at %.3f bits (%.0f s)", name, how, config, 100 * row["compiled_top1"],
             row["effective_bits"], row["seconds"])
    return row


def net_label(row: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    """The row's configuration; a QAT row trained longer than ``meta`` says gets its own schedule."""
    base = label(dict(row["config"], granularity="column")).removesuffix(", column scale")
    if row["how"] != "qat":
        return f"{base} PTQ"
    qat, meta = row.get("qat"), meta or {}
    if qat and (qat["size"], qat["phase1"], qat["phase2"]) != (meta.get("qat_size"), meta.get("phase1"),
                                                               meta.get("phase2")):
        return f"{base} QAT ({qat['size']} images, {qat['phase1']}+{qat['phase2']} epochs)"
    return f"{base} QAT"


def nets_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The trained nets' section: per net, rows by effective bits; savings against uniform 4-bit."""
    lines = ["## Trained nets: pools after training and pools in the loop (QAT)", "",
             f"Generated by `scripts/weight_pool_evidence.py --nets` — torch {meta['torch']}, numpy "
             f"{meta.get('numpy', '(not recorded)')}, onnxruntime {meta.get('onnxruntime', '(not recorded)')}, Python "
             f"{meta['python']} (the nets are trained with torch: the figures depend on the torch build), "
             f"1 thread, load average {meta['load']} when it started; {meta['minutes']:.0f} min. "
             f"The seed-0 float nets of `scripts/two_stage_evidence.py` (MNIST-5k at 32×32, {meta['train']} train / "
             f"{meta['test']} test images, {meta['float_epochs']} float epochs). Paper macro (5-bit ADC), 4-bit "
             "inputs, per-column scales, `--no-shift`, calibration on 256 training images; top-1 of each build's "
             f"`model.cim.onnx` on the {meta['test']} test images. QAT: phase 1 ({meta['phase1']} epoch) then phase 2 "
             f"({meta['phase2']} epoch) on the first {meta.get('qat_size', meta['train'])} training images, batch "
             "64, Adam at 1e-3 (a short fine-tune on a shared 2-core machine, not the paper's schedule); "
             "pooled QAT re-assigns indices every step (straight-through) "
             "and the build uses the trained pool and codes (bit-exact with the training forward). Bitlines and "
             "macros: the uniform build's weight columns, or the pool's bitlines (`P · w_slices`) held once; "
             "saved = against uniform 4-bit.", ""]
    if meta.get("partial"):
        lines += [f"**Partial run: {len(rows)} of {meta['asked']} rows completed.**", ""]
    for net in dict.fromkeys(r["net"] for r in rows):
        mine = [r for r in rows if r["net"] == net]
        ref = next((r for r in mine if r["how"] == "ptq" and r["config"] == {"w_bits": 4}), None)
        lines += [f"### {net} (float top-1 {100 * mine[0]['float_top1']:.1f}%)", "",
                  "| configuration | eff. bits/weight | top-1 % | weight cells | bitlines on chip (macros) | "
                  "bitlines saved | ADC conversions |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(mine, key=lambda r: (-r["effective_bits"], r["how"])):
            saved = f"{100 * (1 - r['bitlines'] / ref['bitlines']):.1f}%" if ref else "–"
            lines.append(f"| {net_label(r, meta)} | {r['effective_bits']:.3f} | {100 * r['compiled_top1']:.1f} | "
                         f"{r['cells']:,} | {r['bitlines']:,} ({r['macros']}) | {saved} | {r['conversions']:,} |")
        lines.append("")
    return "\n".join(lines)


def nets_args(argv: list[str]) -> argparse.Namespace:
    """``--nets`` mode's options, over two_stage's defaults for the training options it does not set."""
    from scripts import two_stage_evidence as two_stage

    parser = argparse.ArgumentParser(description="weight pools on the trained nets (module doc)")
    parser.add_argument("--nets", nargs="+", default=["vgg9", "resnet18"], choices=two_stage.NETS)
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "two_stage"))
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--vgg-div", type=int, default=4)
    parser.add_argument("--float-epochs", type=int, default=3)
    parser.add_argument("--phase1-epochs", type=int, default=1)
    parser.add_argument("--phase2-epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--qat-size", type=int, help="train QAT on the first N training images (default: all)")
    parser.add_argument("--select", type=int, nargs="+", help="only these entries of NET_ORDER (indices)")
    parser.add_argument("--append", action="store_true", help="add the rows to --out's weight_pool_nets.json")
    parser.add_argument("--rows", type=int, help="stop after this many configurations (per net)")
    parser.add_argument("--out", default=str(OUT), help="folder of weight_pool.md and the JSON files")
    # two_stage's training options this script does not set (learning rates, ...) at their defaults,
    # so that its float nets and cache keys are two_stage's own
    args = argparse.Namespace(**{**vars(two_stage.parse([])), **vars(parser.parse_args(argv))})
    args.progress = False
    return args


def nets_main(argv: list[str]) -> None:
    from scripts import two_stage_evidence as two_stage

    args = nets_args(argv)
    import torch

    from cimc.train import TrainData

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    order = NET_ORDER[:args.rows] if args.rows else NET_ORDER
    if args.select:
        order = tuple(NET_ORDER[i] for i in args.select)
    import onnxruntime

    meta = {"torch": torch.__version__, "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "load": f"{os.getloadavg()[0]:.1f}",
            "qat_size": args.qat_size or args.train_size, "train": args.train_size, "test": args.test_size,
            "float_epochs": args.float_epochs,
            "phase1": args.phase1_epochs, "phase2": args.phase2_epochs, "asked": len(order) * len(args.nets)}
    start, rows = time.perf_counter(), []
    earlier = out / "weight_pool_nets.json"
    if args.append and earlier.is_file():  # more rows for the same table (e.g. longer QAT): keep its meta
        doc = json.loads(earlier.read_text())
        rows, meta = doc["rows"], dict(doc["meta"], asked=doc["meta"]["asked"] + meta["asked"])
    before = float(meta.get("minutes", 0.0))
    train, test = two_stage.mnist32("train", args.train_size), two_stage.mnist32("test", args.test_size)
    with tempfile.TemporaryDirectory(prefix="cimc-pool-nets-") as tmp:
        work = Path(tmp)
        np.savez(work / "calib.npz", x=train.x[:NET_CALIB], y=train.y[:NET_CALIB])
        np.savez(work / "test.npz", x=test.x, y=test.y)
        run = two_stage.Run(TrainData(train, test, batch_size=64), work / "calib.npz", work / "test.npz", args, work)
        floats = {name: two_stage.float_onnx(name, 0, run) for name in args.nets}
        for how, config in order:
            for name in args.nets:
                try:
                    rows.append(net_row(name, how, config, floats[name], run))
                except Exception:  # one row failing must not lose the others
                    log.exception("%s %s %s failed", name, how, config)
                    continue
                meta.update(minutes=before + (time.perf_counter() - start) / 60, partial=len(rows) < meta["asked"])
                (out / "weight_pool_nets.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
                write_markdown(out)
    meta.update(partial=len(rows) < meta["asked"])
    (out / "weight_pool_nets.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    write_markdown(out)


def write_markdown(out: Path) -> None:
    """``weight_pool.md`` from the JSON files in ``out`` (digits, then the trained nets when present)."""
    text = markdown(json.loads((OUT / "weight_pool.json").read_text()))
    nets = out / "weight_pool_nets.json"
    if nets.is_file():
        doc = json.loads(nets.read_text())
        text += "\n" + nets_markdown(doc["rows"], doc["meta"])
    (out / "weight_pool.md").write_text(text)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("cimc").setLevel(logging.ERROR)
    argv = sys.argv[1:]
    if "--render" in argv:
        write_markdown(OUT)
        return
    if any(a.startswith("--") for a in argv):
        nets_main(argv)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="cimc-pool-") as tmp:
        for config in (*UNIFORM, *POOLED, *PRUNED):
            rows.append(run(dict(config), Path(tmp) / "build"))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "weight_pool.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    write_markdown(OUT)


if __name__ == "__main__":
    main()
