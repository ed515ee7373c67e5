"""The structure-only morph of the zoo's VGG9 / VGG16 / ResNet18 against the paper's Tables III–V.

For each model and bitline budget, ``usage_rows`` runs ``morph_structure`` with
``MorphOptions.usage_search()`` on the zoo model (seed 0, BN ``γ ~ U[0.5, 1.5)``) and reports
what the compile path's ``model_cost`` counts on the rewritten graph: params, bitlines,
macros loaded and macro usage (weights stored / cells of the loaded macros), next to the
paper's morphed models. ``scripts/morph_table.py`` prints the Markdown table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.planning import MorphOptions
from cimc.morph.structure import morph_structure

BUDGETS = (512, 1024, 4096, 8192)

#: (params, bitlines, macro usage %) of the paper's morphed models, Tables III–V.
PAPER: dict[str, dict[int, tuple[float, int, float]]] = {
    "vgg9": {8192: (1.971e6, 8186, 93.98), 4096: (0.924e6, 3907, 88.12), 1024: (0.210e6, 1024, 80.11),
             512: (0.098e6, 511, 74.77)},
    "vgg16": {8192: (1.983e6, 8148, 94.54), 4096: (0.952e6, 3963, 90.83), 1024: (0.203e6, 1021, 77.58),
              512: (0.088e6, 510, 67.07)},
    "resnet18": {8192: (1.804e6, 8188, 86.01), 4096: (0.829e6, 4088, 78.77), 1024: (0.132e6, 997, 50.71),
                 512: (0.033e6, 512, 25.37)},
}


@dataclass(frozen=True)
class UsageRow:
    model: str
    budget: int
    params: int
    bitlines: int
    macros: int
    usage: float
    fits: bool
    lam: float
    ratio: float | None
    seconds: float

    @property
    def paper_usage(self) -> float:
        return PAPER[self.model][self.budget][2] / 100


def usage_rows(graphs: dict[str, Graph], budgets: tuple[int, ...] = BUDGETS,
               options: MorphOptions | None = None) -> list[UsageRow]:
    """One row per (model, budget): the structure-only morph measured by ``model_cost``."""
    macro = MacroSpec()
    options = options or MorphOptions.usage_search()
    rows = []
    for name, graph in graphs.items():
        for budget in budgets:
            start = time.perf_counter()
            result = morph_structure(graph, macro, budget, options)
            c = result.cost
            rows.append(UsageRow(name, budget, c.params, c.bitlines, c.macros, c.macro_usage,
                                 c.bitlines <= budget and c.fits_on_chip, result.report.cost_weight,
                                 result.report.ratio, time.perf_counter() - start))
    return rows


def markdown(rows: list[UsageRow]) -> str:
    """The README table."""
    lines = ["| model | BL budget | params | bitlines | macros | macro usage | paper: params | paper: bitlines "
             "| paper: usage | λ | R |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p_params, p_bl, p_usage = PAPER[r.model][r.budget]
        ratio = f"{r.ratio:.3f}" if r.ratio is not None else "–"
        lines.append(f"| {r.model} | {r.budget:,} | {r.params:,} | {r.bitlines:,} | {r.macros} | "
                     f"**{100 * r.usage:.2f}%** | {p_params / 1e6:.3f} M | {p_bl:,} | {p_usage:.2f}% | "
                     f"{r.lam:.2f} | {ratio} |")
    return "\n".join(lines)
