"""What the passes of one compile share: ``PassContext``, with a typed field for everything a
pass leaves for a later pass or for the build (no string-keyed results).

* ``calibration`` / ``calibration_inputs`` / ``calibration_graph``: the calibration batch (loaded
  once, by quantize or scale-to-shift) and each calibrated layer's float input (quantize →
  scale-to-shift), or, when quantize streamed the inputs layer by layer and kept only those of
  the layers whose output reaches no other CIM layer, the float graph it ran, from which
  scale-to-shift recomputes the other inputs it needs;
* ``quantize``: which layers took QAT steps and which were calibrated (→ report);
* ``shift``: the output SQNR of scale-to-shift (→ report);
* ``morph_plan`` / ``morph_report``: the channel plan summary of morph-channels and the
  structure-only morph's report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cimc.limits import MEMORY_BYTES
from cimc.macro import MacroSpec

if TYPE_CHECKING:
    import numpy as np

    from cimc.ir.graph import Graph
    from cimc.morph.planning import MorphReport
    from cimc.quant.calibration import Calibration


@dataclass
class PassRecord:
    name: str
    modified: bool
    seconds: float


@dataclass(frozen=True)
class QuantizeReport:
    """Layers whose steps came from QAT metadata, layers calibrated, and how."""

    qat_layers: list[str]
    calibrated_layers: list[str]
    granularity: str
    weight_method: str


@dataclass(frozen=True)
class ShiftReport:
    """The worst model-output SQNR after scale-to-shift and the samples it was measured on."""

    output_sqnr_db: float
    samples: int


@dataclass
class PassContext:
    """What passes share: the macro, the on-chip bitline budget, their typed results (module
    doc), the history of passes run and where to dump the IR."""

    macro: MacroSpec
    bitline_budget: int | None = None
    calibration: Calibration | None = None
    calibration_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    calibration_graph: Graph | None = None
    """The float graph quantize calibrated on when it streamed the inputs (``calibration_inputs``
    then holds only the terminal layers'): scale-to-shift recomputes from it the others it needs."""
    quantize: QuantizeReport | None = None
    shift: ShiftReport | None = None
    morph_plan: list[dict[str, Any]] | None = None
    morph_report: MorphReport | None = None
    history: list[PassRecord] = field(default_factory=list)
    dump_dir: Path | None = None
    progress: Callable[[str], None] | None = None
    memory_budget: int = MEMORY_BYTES
    """Bytes a pass may hold at once for its arrays (calibration): 4 × ``--max-tensor-bytes``."""
