"""Energy per inference, from the events of the timeline (``cimc.cost.timeline``).

With the macro's per-event energies (``MacroSpec.*_pj``, pJ; defaults and their source in
``cimc.macro``), over the phases ``φ`` and loads of one batch of ``B`` inputs:

==============  ==========================================================================
component       energy of the batch
==============  ==========================================================================
``adc``         ``Σ_φ conversions_φ · adc_pj``
``adder``       ``Σ_φ conversions_φ · add_pj`` (each ADC code shift-added once)
``dac``         ``Σ_φ wordline drives_φ · dac_bits · dac_pj``
``psum_buffer`` ``Σ_φ (psum reads_φ + psum writes_φ) · psum_pj``
``offchip``     ``loads · (WL · BL · cell_bits / 8) · offchip_pj`` (a whole macro per load)
``cell_write``  ``loads · WL · BL · cell_bits · write_pj``
==============  ==========================================================================

Per inference: the batch's energy divided by ``B``; when the weights stay on chip
(``resident``) the two load components are paid once, not per batch: they are reported as
``initial_load_pj`` and left out of the per-inference figures. ``macs`` per inference is
``Σ params · out_pixels`` over the CIM layers (weights, not cells) and ``tops_per_w`` is
``2 · macs / total_pj`` (one operation per pJ is one TOPS/W).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cimc.cost.timeline import TimelineResult
from cimc.macro import MacroSpec

#: The components, in report order.
COMPONENTS = ("adc", "dac", "adder", "psum_buffer", "offchip", "cell_write")


@dataclass(frozen=True)
class EnergyCounts:
    """The events of one batch that cost energy."""

    conversions: int
    wordline_drives: int
    psum_accesses: int
    loads: int


@dataclass(frozen=True)
class Energy:
    """Energy per inference by component (pJ), the one-time load, MACs and TOPS/W."""

    adc: float
    dac: float
    adder: float
    psum_buffer: float
    offchip: float
    cell_write: float
    total: float
    initial_load: float
    macs: int
    tops_per_w: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def event_counts(result: TimelineResult) -> EnergyCounts:
    phases = [p.phase for p in result.phases]
    return EnergyCounts(sum(p.conversions for p in phases), sum(p.drives for p in phases),
                        sum(p.psum_reads + p.psum_writes for p in phases), len(result.loads))


def batch_energy(counts: EnergyCounts, macro: MacroSpec) -> dict[str, float]:
    """Energy of one batch by component (pJ; module doc)."""
    cells = macro.wordlines * macro.bitlines * macro.cell_bits
    return {"adc": counts.conversions * macro.adc_pj, "dac": counts.wordline_drives * macro.dac_bits * macro.dac_pj,
            "adder": counts.conversions * macro.add_pj, "psum_buffer": counts.psum_accesses * macro.psum_pj,
            "offchip": counts.loads * cells / 8 * macro.offchip_pj,
            "cell_write": counts.loads * cells * macro.write_pj}


def energy(result: TimelineResult, macro: MacroSpec) -> Energy:
    """Per-inference energy of a timeline (module doc)."""
    batch = batch_energy(event_counts(result), macro)
    once = batch["offchip"] + batch["cell_write"] if result.resident else 0.0
    per = {k: (0.0 if result.resident and k in ("offchip", "cell_write") else v / result.batch)
           for k, v in batch.items()}
    total = sum(per[k] for k in COMPONENTS)
    return Energy(**per, total=total, initial_load=once, macs=result.macs,
                  tops_per_w=2 * result.macs / total if total else 0.0)

