"""Running a build the way the macros would, from the build files alone.

Per CIM layer, for a batch of ``N`` inputs (no Python loop over samples, pixels, segments
or ADC groups):

1. DAC codes ``a_q = clip(round(x / S_A))`` (``cimc.numerics``);
2. every segment's bitline sums at once: the grouped convolution of
   ``cimc.backends.cim_segments`` — the codes each segment's wordlines see, gathered, against
   the macro columns — as one stacked matrix product ``(S·G, N·Ho·Wo, Cmax·kh·kw) ×
   (S·G, Cmax·kh·kw, Cout_g)``; the products and sums are small integers, exact in float32;
3. one ADC conversion per bitline and pixel: ``p̂ = clip(round(p / S_ADC), ±(2^(b−1) − 1))``;
4. the adder tree ``P = Σ_s p̂``, then the shifter (or scale) and the bias:
   ``y = P · scale + b'``.

Digital ops run with the reference's kernels and rounding rules
(``cimc.cim_reference.digital_op``). ``Emulator.run`` returns the outputs and, with
``record``, per-layer traces (input codes, ADC codes ``(N, S, Cout, Ho, Wo)``, sums, outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cimc import numerics
from cimc.backends.cim_files import decode_attr
from cimc.backends.emulator.checks import check_build
from cimc.backends.emulator.files import BuildFiles, read_build
from cimc.backends.emulator.layers import MacroLayer, macro_layers
from cimc.blas import single_blas_thread
from cimc.cim_reference import CompiledRun, LayerTrace, digital_op
from cimc.errors import UsageError
from cimc.ir.kernels import windows


class Emulator:
    """A validated build, ready to run (module doc)."""

    def __init__(self, files: BuildFiles) -> None:
        check_build(files)
        self.files = files
        self.layers = macro_layers(files)
        self.nodes = [(n, {k: decode_attr(v) for k, v in n["attrs"].items()}) for n in files.graph["nodes"]]
        self.constants = {t: files.constants[key] for t, key in files.graph["constants"].items()}
        self._weights = [gemm_weights(layer) for layer in self.layers]

    @classmethod
    def open(cls, path: str | Path) -> Emulator:
        """Read, authenticate and check the build at ``path``."""
        return cls(read_build(path))

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return list(self.files.graph["inputs"])

    def feeds(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named, shape-checked float32 inputs (a bare array feeds the only input)."""
        if isinstance(x, np.ndarray):
            if len(self.inputs) != 1:
                raise UsageError(f"the model has {len(self.inputs)} inputs; pass them by name")
            x = {self.inputs[0]["name"]: x}
        out = {}
        for spec in self.inputs:
            if spec["name"] not in x:
                raise UsageError(f"missing input '{spec['name']}'")
            arr = np.ascontiguousarray(x[spec["name"]], dtype=np.float32)
            if arr.shape[1:] != tuple(spec["shape"][1:]):
                raise UsageError(f"input '{spec['name']}' has samples of shape {list(arr.shape[1:])}, "
                                 f"the model expects {spec['shape'][1:]}")
            out[spec["name"]] = arr
        return out

    def run(self, x: np.ndarray | Mapping[str, np.ndarray], *, record: bool = False) -> CompiledRun:
        """Execute the model on a batch (module doc)."""
        values: dict[str, np.ndarray] = {**self.constants, **self.feeds(x)}
        traces: dict[str, LayerTrace] = {}
        last = _last_uses(self.nodes)
        outputs = {t["name"] for t in self.files.graph["outputs"]}
        for step, (node, attrs) in enumerate(self.nodes):
            if node["cim_layer"] is not None:
                trace = run_layer(self.layers[node["cim_layer"]], self._weights[node["cim_layer"]],
                                  values[node["inputs"][0]], record)
                values[node["outputs"][0]] = trace.outputs
                if record:
                    traces[node["name"]] = trace
            else:
                values[node["outputs"][0]] = digital_op(node["op"], [values[t] for t in node["inputs"] if t], attrs)
            for t in node["inputs"]:
                if last.get(t) == step and t not in outputs and t not in self.constants and not record:
                    values.pop(t, None)
        return CompiledRun({name: values[name] for name in sorted(outputs, key=self._output_order)}, traces)

    def _output_order(self, name: str) -> int:
        return [t["name"] for t in self.files.graph["outputs"]].index(name)


def _last_uses(nodes: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, int]:
    return {t: step for step, (node, _) in enumerate(nodes) for t in node["inputs"]}


def gemm_weights(layer: MacroLayer) -> np.ndarray:
    """The grouped conv weight as one matrix per conv group: ``(S·G, Cmax·kh·kw, Cout_g)``."""
    w = layer.conv.weight
    groups = layer.conv.groups
    return np.ascontiguousarray(w.reshape(groups, w.shape[0] // groups, -1).transpose(0, 2, 1))


def conv_columns(layer: MacroLayer, codes: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``(S·G, N·Ho·Wo, Cmax·kh·kw)``: every conv group's gathered, zero-padded input windows."""
    x = codes if layer.conv.index is None else np.take(codes, layer.conv.index, axis=1)
    t, left, b, r = layer.pads
    if any(layer.pads):
        x = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    kh, kw = layer.conv.weight.shape[2:]
    win = windows(x, (kh, kw), layer.strides, layer.dilations)  # (N, C', Ho, Wo, kh, kw)
    n, c, ho, wo = win.shape[:4]
    groups = layer.conv.groups
    cols = win.reshape(n, groups, c // groups, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    return cols.reshape(groups, n * ho * wo, -1), ho, wo


def bitline_sums(layer: MacroLayer, weight: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``(S, G, N, Ho, Wo, Cout_g)`` exact partial sums of every segment: the grouped
    convolution as one stacked matrix product (one BLAS thread per product: they are many
    and small). ``round`` makes exactness explicit whatever the BLAS summation order."""
    cols, ho, wo = conv_columns(layer, codes)
    with single_blas_thread():
        p = np.matmul(cols, weight)  # (S·G, N·Ho·Wo, Cout_g)
    np.rint(p, out=p)
    groups = layer.conv.groups // layer.segments
    return p.reshape(layer.segments, groups, codes.shape[0], ho, wo, weight.shape[2])


def run_layer(layer: MacroLayer, weight: np.ndarray, x: np.ndarray, record: bool = True) -> LayerTrace:
    """One CIM layer on float input ``x`` (module doc); without ``record`` the ADC codes are
    not rearranged into the trace layout and the sums ``P`` are overwritten by the outputs."""
    lead = x.shape[:-1]
    a = x if layer.kind == "conv" else x.reshape(-1, x.shape[-1], 1, 1)
    codes = numerics.quantize(a, layer.a_step, layer.a_bits, layer.a_signed)
    p = bitline_sums(layer, weight, codes)  # (S, G, N, Ho, Wo, Cg)
    s, g, n, ho, wo, cg = p.shape
    step = layer.adc_step.reshape(1, g, 1, 1, 1, cg) if layer.adc_step.size > 1 else layer.adc_step
    adc = numerics.quantize(p, step, layer.adc_bits, signed=True, out=p)  # the ADC (numerics.adc_codes)
    total = np.ascontiguousarray(adc.sum(axis=0).transpose(1, 0, 4, 2, 3)).reshape(n, g * cg, ho, wo)
    y = numerics.layer_output(total, layer.scale, layer.bias, out=None if record else total)
    codes_nscw = adc.transpose(2, 0, 1, 5, 3, 4).reshape(n, s, g * cg, ho, wo) if record else adc[:0]
    if layer.kind == "conv":
        return LayerTrace(codes, codes_nscw, total, y)
    return LayerTrace(codes.reshape(x.shape), codes_nscw.reshape(n, s, layer.cout),
                      total.reshape(*lead, layer.cout), y.reshape(*lead, layer.cout))
