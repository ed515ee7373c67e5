"""The figures a search or a sweep can minimise, declared once (``OBJECTIVES``).

From the cost model (``cimc.cost.model``), per inference:

* ``latency``: ``computing_cycles + loading_cycles`` — the weights loaded once (report totals);
* ``computing``: ``computing_cycles`` — the weights resident;
* ``conversions``: ``adc_conversions`` — a proxy of energy.

From the timeline (``cimc.cost.timeline``) at ``--infer-batch B`` under ``--timing`` and
``--conversion``, on the ``--bl`` budget, and its energy (``cimc.cost.energy``):

* ``batch-latency``: cycles per inference in the steady state, ``steady_batch_cycles / B``
  (reloads every batch when the weights do not fit, the compute alone when they do);
* ``energy``: pJ per inference (the one-time load of resident weights left out);
* ``edp``: the energy-delay product, ``energy · batch-latency`` (pJ · cycles).

Each objective names the field a sweep record keeps it in (``field``). The declarations import
nothing heavy (the command line reads them at start); the figures import the energy model
when computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cimc.errors import UsageError

if TYPE_CHECKING:
    from cimc.cost.model import ModelCost
    from cimc.cost.timeline import TimelineResult
    from cimc.macro import MacroSpec


@dataclass(frozen=True)
class Objective:
    """One figure to minimise: its name, the sweep record field holding it, its unit, whether it
    needs the timeline, and its help text."""

    name: str
    field: str
    unit: str
    timeline: bool
    help: str


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("latency", "latency_cycles", "cycles", False,
              "cycles per inference, weights loaded once: computing + loading (cost model)"),
    Objective("computing", "computing_cycles", "cycles", False, "computing cycles per inference (cost model)"),
    Objective("conversions", "adc_conversions", "conversions", False, "ADC conversions per inference (cost model)"),
    Objective("batch-latency", "cycles_per_inference", "cycles", True,
              "cycles per inference of the timeline at --infer-batch, under --timing and --conversion"),
    Objective("energy", "energy_pj", "pJ", True, "energy per inference of the timeline (pJ)"),
    Objective("edp", "edp", "pJ·cycles", True, "energy-delay product: energy × cycles per inference (timeline)"),
)}


def get_objective(name: str) -> Objective:
    """The declared objective ``name`` (``UsageError`` naming the others)."""
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective '{name}'", hint=f"choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def cost_figures(cost: ModelCost) -> dict[str, float]:
    """The cost-model objectives' figures, by record field."""
    return {"latency_cycles": cost.computing_cycles + cost.loading_cycles,
            "computing_cycles": cost.computing_cycles, "adc_conversions": cost.adc_conversions}


def timeline_figures(result: TimelineResult, macro: MacroSpec) -> dict[str, float]:
    """The timeline objectives' figures, by record field (module doc)."""
    from cimc.cost.energy import energy

    cycles = result.steady_batch_cycles / result.batch
    joules = energy(result, macro).total
    return {"cycles_per_inference": cycles, "energy_pj": joules, "edp": joules * cycles}


def objective_value(name: str, cost: ModelCost, result: TimelineResult | None = None,
                    macro: MacroSpec | None = None) -> float:
    """The figure ``name`` minimises; a timeline objective needs ``result`` and ``macro``."""
    objective = get_objective(name)
    if not objective.timeline:
        return cost_figures(cost)[objective.field]
    if result is None or macro is None:
        raise UsageError(f"objective '{name}' needs the timeline")
    return timeline_figures(result, macro)[objective.field]
