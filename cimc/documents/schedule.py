"""``schedule.json``: the order in which the macro executes the model, one step per node in
topological order (CIM layers with their loads and cycles, digital ops with their output
shape), plus the load and cycle totals."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from cimc.documents.base import Count, Document, Size


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
