"""Latency and energy per inference against the bitline budget, from the timeline
(``cimc.cost.timeline``) and its energy: VGG9, ResNet18 (the zoo's CIFAR models) and MobileNetV2
(the real-model corpus, 224×224), from 512 bitlines to the whole model, ``paper`` and
``overlap`` timing, batches 1, 8 and 64; and the structure-only morphed VGG9 and ResNet18 of the
README's morph table (each budget's morph compiled at that budget) on the same axes.

    python3 scripts/timeline_budget.py --out /tmp/tb          # writes tb.json, tb.md, tb.png
    python3 scripts/timeline_budget.py --models vgg9 --out /tmp/tb
    python3 scripts/timeline_budget.py --from-json /tmp/tb.json --out /tmp/tb2  # redraw only

Each model is mapped without quantization (fold-batchnorm and the mapping passes, 4/4 bits as in
the paper; the timeline needs the placement). The morph's load-latency reduction is the paper's
comparison: the cycles loading weights for the first inference (batch 1, ``paper``), morphed
model against the baseline at the same budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cimc.api import CompileOptions, compile_graph  # noqa: E402
from cimc.cost.energy import energy  # noqa: E402
from cimc.cost.model import model_cost  # noqa: E402
from cimc.cost.timeline import timeline  # noqa: E402
from cimc.frontend import import_onnx  # noqa: E402
from cimc.ir.graph import Graph  # noqa: E402
from cimc.macro import MacroSpec  # noqa: E402
from cimc.passes.pipelines import MAPPING  # noqa: E402

TIMINGS = ("paper", "overlap")
BATCHES = (1, 8, 64)
MORPH_BUDGETS = (512, 1024, 4096, 8192)
OPTIONS = CompileOptions(passes=("fold-batchnorm", *MAPPING))


def source_graph(name: str) -> Graph:
    """The float model as cimc imports it (BatchNormalization kept, for the morph)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        if name in ("vgg9", "resnet18"):
            import cimc.models as models

            models.export_onnx(name, path)
        else:
            from tests.models import build
            from tests.models.export import export

            model, x = build(name, False)
            export(model, x, path, "legacy")
        return import_onnx(path)


def budgets(whole: int) -> list[int]:
    out, b = [], 512
    while b < whole:
        out.append(b)
        b *= 2
    return [*out, whole]


def point(placed: Graph, macro: MacroSpec, budget: int, timing: str, batch: int) -> dict[str, Any]:
    r = timeline(placed, macro, budget, timing, batch)  # type: ignore[arg-type]
    e = energy(r, macro)
    return {"budget": budget, "timing": timing, "batch": batch, "slots": r.slots,
            "cycles_per_inference": r.steady_batch_cycles / batch, "first_batch_cycles": r.makespan,
            "load_cycles": r.load_cycles, "compute_cycles": r.compute_cycles, "overlap_cycles": r.overlap_cycles,
            "resident": r.resident, "energy_pj": e.total, "initial_load_pj": e.initial_load,
            "offchip_pj": e.offchip + e.cell_write, "tops_per_w": e.tops_per_w}


def sweep_model(name: str, graph: Graph, morph: bool) -> dict[str, Any]:
    macro = MacroSpec()
    placed, _ = compile_graph(graph, OPTIONS)
    cost = model_cost(placed, macro)
    whole = cost.min_budget_without_reload
    rows = [point(placed, macro, b, t, n) for b in budgets(whole) for t in TIMINGS for n in BATCHES]
    out: dict[str, Any] = {"model": name, "params": cost.params, "macros": cost.macros, "whole_budget": whole,
                           "computing_cycles": cost.computing_cycles, "rows": rows, "morphed": []}
    if morph:
        from cimc.morph.planning import MorphOptions
        from cimc.morph.structure import morph_structure

        for budget in MORPH_BUDGETS:
            result = morph_structure(graph, macro, budget, MorphOptions.usage_search())
            mplaced, _ = compile_graph(result.graph, OPTIONS)
            mcost = model_cost(mplaced, macro, budget)
            out["morphed"].append({"budget": budget, "params": mcost.params, "macros": mcost.macros,
                                   "fits": mcost.fits_on_chip,
                                   "rows": [point(mplaced, macro, budget, t, n) for t in TIMINGS for n in BATCHES]})
    return out


def _row(rows: list[dict[str, Any]], budget: int, timing: str, batch: int) -> dict[str, Any]:
    return next(r for r in rows if (r["budget"], r["timing"], r["batch"]) == (budget, timing, batch))


def markdown(results: list[dict[str, Any]], header: str) -> str:
    lines = [header, "",
             "Cycles per inference (steady state) and energy per inference (µJ) against the bitline budget; "
             "paper macro, 4/4 bits, mapping only.", "",
             "| model | BL budget | macros on chip | paper b1 | overlap b1 | paper b8 | overlap b8 | paper b64 "
             "| overlap b64 | energy b1 (µJ) | energy b64 (µJ) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        for b in sorted({r["budget"] for r in res["rows"]}):
            cells = [f"{_row(res['rows'], b, t, n)['cycles_per_inference']:,.0f}" for n in BATCHES for t in TIMINGS]
            e1, e64 = (_row(res["rows"], b, "paper", n)["energy_pj"] / 1e6 for n in (1, 64))
            name = res["model"] + (" (whole model)" if b == res["whole_budget"] else "")
            lines.append(f"| {name} | {b:,} | {_row(res['rows'], b, 'paper', 1)['slots']:,} | "
                         + " | ".join(cells) + f" | {e1:,.2f} | {e64:,.2f} |")
    lines += ["", "Morphed models (structure-only morph at each budget, the README's morph table) against the "
              "baseline at the same budget: load cycles of the first inference (batch 1, paper) and the reduction; "
              "cycles and energy per inference at batch 1 (paper).", "",
              "| model | BL budget | macros: base → morphed | first-inference load cycles: base → morphed | "
              "load reduction | cycles/inference b1: base → morphed | energy/inference b1 (µJ): base → morphed |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        for m in res["morphed"]:
            base, morphed = _row(res["rows"], m["budget"], "paper", 1), _row(m["rows"], m["budget"], "paper", 1)
            red = 1 - morphed["load_cycles"] / base["load_cycles"] if base["load_cycles"] else 0.0
            lines.append(f"| {res['model']} | {m['budget']:,} | {res['macros']} → {m['macros']} | "
                         f"{base['load_cycles']:,} → {morphed['load_cycles']:,} | {100 * red:.1f}% | "
                         f"{base['cycles_per_inference']:,.0f} → {morphed['cycles_per_inference']:,.0f} | "
                         f"{base['energy_pj'] / 1e6:,.2f} → {morphed['energy_pj'] / 1e6:,.2f} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Rows: cycles per inference, energy per inference, load cycles of the first inference;
    one column per model; the morphed models (resident: the same figures at every batch and
    timing) as black stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(results), figsize=(5.2 * len(results), 11), dpi=110, squeeze=False)
    colors = {1: "tab:blue", 8: "tab:orange", 64: "tab:green"}
    panels = (("cycles_per_inference", "cycles per inference", 1.0), ("energy_pj", "energy per inference (µJ)", 1e-6),
              ("load_cycles", "load cycles of the first batch", 1.0))
    for col, res in enumerate(results):
        for row, (key, label, scale) in enumerate(panels):
            ax = axes[row][col]
            for t, style in (("paper", "-"), ("overlap", "--")):
                for n in (BATCHES if row < 2 else (1,)):
                    pts = sorted((r["budget"], r[key] * scale) for r in res["rows"]
                                 if r["timing"] == t and r["batch"] == n)
                    ax.plot(*zip(*pts, strict=True), style, color=colors[n], marker=".", label=f"{t}, batch {n}")
            morphed = [(m["budget"], _row(m["rows"], m["budget"], "paper", 1)[key] * scale) for m in res["morphed"]]
            if morphed:
                ax.scatter(*zip(*morphed, strict=True), marker="*", s=90, color="black", zorder=3,
                           label="morphed at that budget (weights resident)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("bitline budget")
            ax.set_ylabel(label)
            ax.set_title(f"{res['model']} ({res['macros']} macros, whole model {res['whole_budget']:,} BL)", fontsize=9)
            ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, metadata={"Software": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg9", "resnet18", "mobilenet_v2"])
    parser.add_argument("--out", type=Path, required=True, help="path stem: writes STEM.json, STEM.md, STEM.png")
    parser.add_argument("--from-json", type=Path, help="redraw the table and plot of an earlier STEM.json")
    args = parser.parse_args()
    start = time.perf_counter()
    results = [] if args.from_json is None else json.loads(args.from_json.read_text())
    for name in [] if args.from_json is not None else args.models:
        t0 = time.perf_counter()
        results.append(sweep_model(name, source_graph(name), morph=name in ("vgg9", "resnet18")))
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    import torch

    header = (f"# Timeline vs bitline budget\n\nGenerated by `python3 scripts/timeline_budget.py` "
              f"({time.perf_counter() - start:.0f} s; Python {platform.python_version()}, torch {torch.__version__}).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.out.with_suffix(".md").write_text(markdown(results, header))
    plot(results, args.out.with_suffix(".png"))
    print(markdown(results, header))


if __name__ == "__main__":
    main()
