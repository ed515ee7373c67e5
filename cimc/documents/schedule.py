"""``schedule.json``: the order in which the macro executes the model, one step per node in
topological order (CIM layers with their loads and cycles, digital ops with their output
shape), the load and cycle totals, and the timeline: loads and compute phases on the chip's
physical macros over time (``cimc.cost.timeline``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from cimc.documents.base import Absent, Count, Document, Size

#: The timing models of the timeline (``--timing``).
TimingModel = Literal["paper", "overlap"]
#: The conversion models of the timeline (``--conversion``).
ConversionModel = Literal["serial", "macro-parallel"]


class InitialLoad(Document):
    """The weights loaded once before the first inference (0 and 0 when the model reloads)."""

    macros: Count
    """Macros loaded."""
    cycles: Count
    """Cycles the load takes."""


class CimStep(Document):
    """A CIM layer executed on the macros."""

    step: Count
    """Position in the schedule."""
    node: str
    """Name of the IR node."""
    op: str
    """ONNX op of the node."""
    unit: Literal["cim"]
    """Executed on the CIM macros."""
    macros: list[int]
    """The macros the layer uses."""
    loads: Count
    """Macros (re)loaded before this step during inference (0 when the model fits on chip)."""
    load_cycles: Count
    """Cycles of those loads."""
    segments: Size
    """Row segments of the layer."""
    groups: Size
    """Convolution groups."""
    conversion_rounds: Size
    """ADC rounds per segment: ceil(Cout_g · w_slices / ADCs)."""
    w_slices: Size
    """Weight digit columns per output channel."""
    a_slices: Size
    """DAC cycles per input vector."""
    out_pixels: Size
    """Output positions per inference."""
    cycles: Count
    """Computing cycles of the step."""


class DigitalStep(Document):
    """A node executed by the digital unit."""

    step: Count
    """Position in the schedule."""
    node: str
    """Name of the IR node."""
    op: str
    """ONNX op of the node."""
    unit: Literal["digital"]
    """Executed digitally, off the macros."""
    output_shape: list[int]
    """Shape of the node's first output."""


Step = Annotated[CimStep | DigitalStep, Field(discriminator="unit")]


class LoadEvent(Document):
    """One placed macro loaded into one physical macro (slot)."""

    macro: Count
    """The placed macro (``layout.json`` index)."""
    slot: Count
    """The physical macro it is loaded into."""
    start: Count
    """First cycle of the load."""
    end: Count
    """Cycle the load is done (``start + load_cycles``)."""
    phase: Count
    """The compute phase it is loaded for."""


class ComputePhase(Document):
    """One pass of one CIM layer over a run of the batch's output pixels."""

    phase: Count
    """Position in the timeline (phases run one after the other)."""
    layer: Count
    """CIM layer index."""
    node: str
    """Name of the IR node."""
    segments: list[Count]
    """The layer's segments whose columns the phase converts (all of each, or one chunk of one)."""
    columns: Size
    """Digit columns converted."""
    macros: list[Count]
    """The placed macros it computes on."""
    slots: list[Count]
    """The physical macro holding each of ``macros``."""
    first_pixel: Count
    """First output pixel of the batch's pixel stream (input ``n``, pixel ``i``: ``n·out_pixels + i``)."""
    pixels: Size
    """Output pixels computed."""
    start: Count
    """First cycle."""
    end: Count
    """Cycle it is done."""
    conversions: Count
    """ADC conversions."""
    wordline_drives: Count
    """Wordlines driven (one per row of each segment and group, per pixel and input digit)."""
    psum_reads: Count
    """Partial sums read from the buffer (passes after a layer's first)."""
    psum_writes: Count
    """Partial sums written to the buffer (passes before a layer's last)."""
    psum_entries: Count
    """Buffer entries the tile holds after this phase (``pixels · Cout`` while passes remain)."""


class TimelineTotals(Document):
    """What the timeline adds up to for one batch."""

    makespan: Count
    """Last cycle of the batch from an empty chip."""
    compute_cycles: Count
    """Cycles of all compute phases."""
    loads: Count
    """Macro loads."""
    load_cycles: Count
    """Cycles of all loads (summed over concurrent ones)."""
    overlap_cycles: Count
    """Cycles in which a load runs while a phase computes."""
    stall_cycles: Count
    """Cycles without a computing phase (``makespan − compute_cycles``)."""
    resident: bool
    """No load replaced a macro: the weights stay for the next batch."""
    steady_batch_cycles: Count
    """Cycles of each later batch: ``compute_cycles`` when resident, else ``makespan``."""


class Timeline(Document):
    """Loads and compute phases on the physical macros over time (docs/build-format.md)."""

    timing: TimingModel
    """``paper``: load, then compute; ``overlap``: loads while other macros compute."""
    batch: Size
    """Inputs served by one load of the weights."""
    slots: Size
    """Physical macros: ``max(1, floor(bitline_budget / BL))``."""
    load_cycles: Size
    """Cycles of one macro load (the macro's)."""
    concurrent_loads: Size
    """Loads that can run at once (the macro's)."""
    psum_buffer: Size
    """Partial-sum buffer entries (the macro's)."""
    phases: list[ComputePhase]
    """Compute phases in execution order."""
    loads: list[LoadEvent]
    """Loads in the order they are issued."""
    totals: TimelineTotals
    """The batch's totals."""
    conversion: ConversionModel | Absent = None
    """``macro-parallel``: every macro's ADCs convert its own columns at once (absent: ``serial``,
    the paper's count)."""


class Schedule(Document):
    """The compact (not per pixel) execution order of a build."""

    model_config = ConfigDict(title="cimc schedule")

    initial_load: InitialLoad
    """The load before the first inference."""
    steps: list[Step]
    """One step per node, in topological order."""
    total_computing_cycles: Count
    """Computing cycles of one inference (all CIM steps)."""
    reload_cycles_per_inference: Count
    """Load cycles each inference adds when the model does not fit the bitline budget."""
    timeline: Timeline
    """Loads and compute phases over time."""
