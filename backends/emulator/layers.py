"""A CIM layer as the emulator runs it, rebuilt from the build files only.

The bitline columns of layer ``ℓ`` are read back from the macro arrays: the bitline owning
``(segment s, output channel o)`` holds codes ``q[o, b_s + t]`` on wordlines ``w0 + t``,
``t < rows of s`` (``layout.json``). They give ``columns[s, o, t]`` and with it the grouped
convolution of ``cimc.backends.cim_segments`` (gather ``index`` + ``weight``, ``S·G`` groups).
Steps, bits, scale and bias come from ``quant.json``; strides, pads and dilations from the
layer's node in ``graph.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.backends.cim_files import decode_attr
from cimc.backends.cim_segments import SegmentConv, segment_conv
from cimc.backends.emulator.checks import owner_arrays
from cimc.backends.emulator.files import BuildFiles


@dataclass(frozen=True, eq=False)
class MacroLayer:
    """Everything needed to run one CIM layer (module doc)."""

    index: int
    node: str
    kind: str
    cout: int
    segments: int
    conv: SegmentConv
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    a_step: float
    a_bits: int
    a_signed: bool
    adc_step: np.ndarray
    adc_bits: int
    scale: np.ndarray
    bias: np.ndarray

    @property
    def in_channels(self) -> int:
        return int(self.conv.weight.shape[1]) * self.conv.groups


def macro_columns(macros: np.ndarray, owner: np.ndarray, index: int, layer: dict[str, Any]) -> np.ndarray:
    """``(S, Cout, Rmax)`` codes of layer ``index`` read from the macro arrays (module doc)."""
    rows = np.array([s["row_stop"] - s["row_start"] for s in layer["segments"]], dtype=np.int64)
    rmax = int(rows.max())
    m, b = np.nonzero(owner[0] == index)
    seg, ch, w0 = owner[1][m, b], owner[2][m, b], owner[3][m, b]
    offset = np.arange(rmax)[None, :]
    wordline = np.minimum(w0[:, None] + offset, macros.shape[1] - 1)
    cells = macros[m[:, None], wordline, b[:, None]].astype(np.float32)
    columns = np.zeros((rows.shape[0], layer["cout"], rmax), dtype=np.float32)
    columns[seg, ch] = np.where(offset < rows[seg][:, None], cells, 0)
    return columns


def _geometry(node: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    if node["op"] != "Conv":
        return (1, 1), (0, 0, 0, 0), (1, 1)
    attrs = {k: decode_attr(v) for k, v in node["attrs"].items()}
    return tuple(attrs["strides"]), tuple(attrs["pads"]), tuple(attrs["dilations"])


def macro_layers(files: BuildFiles) -> list[MacroLayer]:
    """Every CIM layer of the build, in layout order."""
    owner = owner_arrays(files.layout)
    nodes = {n["cim_layer"]: n for n in files.graph["nodes"] if n["cim_layer"] is not None}
    out = []
    for i, (layer, q) in enumerate(zip(files.layout["layers"], files.quant["layers"], strict=True)):
        kh, kw = layer["kernel"]
        bounds = np.array([s["row_start"] for s in layer["segments"]] + [layer["rows"]], dtype=np.int64)
        conv = segment_conv(macro_columns(files.macros, owner, i, layer), bounds, layer["rows"] // (kh * kw),
                            layer["groups"], (kh, kw))
        strides, pads, dilations = _geometry(nodes[i])
        out.append(MacroLayer(i, layer["node"], layer["kind"], layer["cout"], len(layer["segments"]), conv,
                              strides, pads, dilations, float(np.float32(q["a_step"])), q["a_bits"], q["a_signed"],
                              np.asarray(q["adc_step"], np.float32), q["adc_bits"],
                              np.asarray(q["scale"], np.float32), np.asarray(q["bias"], np.float32)))
    return out
