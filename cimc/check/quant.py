"""Quantization checks of ``cimc validate``: ``quant.json`` and the cell codes that
``model.cim.onnx`` carries, both against the macro arrays (when the build has them).

* ``quant.json`` lists the layout's CIM layers in order; bits within the ranges of
  ``cimc.options`` (``2 ≤ w_bits ≤ 16``, ``1 ≤ a_bits ≤ 16``: wider than a cell / DAC is fine,
  bit-slicing) and ``2 ≤ adc_bits ≤`` the macro's ADC bits (what the hardware converts);
  ``cell_bits``/``dac_bits`` (when recorded) are the macro's, and the layout's
  ``w_slices = ceil(w_bits / cell_bits)``, ``a_slices = ceil(a_bits / dac_bits)``; step lists
  hold 1 or ``Cout`` positive values;
  every cell of layer ``ℓ`` on a bitline holding weight digit ``j`` is inside
  ``cimc.quant.slicing.digit_range(w_bits, cell_bits, signed, j)`` — ``|q| ≤ 2^(w_bits−1) − 1``
  unsliced, ``[0, 2^c − 1]`` for a lower digit, the signed top digit's range else (with
  ``w_digits: "offset"``: every digit's signed range over the codes ``|q| ≤ slicing.code_max``).
* ``model.cim.onnx`` holds each layer's codes again, as the weight ``L/cell_codes`` of one
  grouped convolution over all segments (``cim_segments``): for segment ``s`` with rows
  ``[b_s, b_{s+1})``, first channel ``c_lo = floor(b_s / k)``, output channel ``o`` and
  row ``r``, ``weight[s·Cout + o, r // k − c_lo, (r mod k) // kw, r mod kw]``. That must
  equal the cell on wordline ``w0 + r − b_s`` of the bitline holding column ``(s, o)`` —
  for every weight of every layer, so a flipped code, a moved or a duplicated column in
  either file shows up without the source model. A bit-sliced layer (``D`` digits) compares
  digits: its ``cell_codes`` either hold the digit columns (``S·Cout·D`` filters in the
  layout's order ``(s, o, j)``) or the codes (``S·Cout`` filters), sliced here by
  ``cimc.quant.slicing.weight_digits`` (in the layer's ``w_digits`` scheme) before the comparison.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cimc.build.cell_map import Owners
from cimc.build.reader import BuildDir, read_bytes
from cimc.check.violations import Validation, Violation
from cimc.documents.layout import Layer
from cimc.errors import BuildError
from cimc.options import OPTIONS
from cimc.quant import numerics, slicing

EXAMPLES = 3
ONNX_FILE = "model.cim.onnx"


def check_quant(build: BuildDir, result: Validation) -> Iterator[Violation]:
    doc = build.optional_json("quant.json")
    if doc is None:
        result.notes.append("no quant.json: quantization not checked")
        return
    layers, names = doc.get("layers", []), build.layer_names
    if [x.get("node") for x in layers] != names:
        yield Violation("quant", "quant.json", "layers are not the layout's CIM layers in order")
        return
    macro = build.macro
    limits = {"w_bits": (*_bounds("w_bits"), "a layer's"), "a_bits": (*_bounds("a_bits"), "a layer's"),
              "adc_bits": (_bounds("adc_bits")[0], macro.adc_bits, "the macro's")}
    for entry, x in zip(build.layout.layers, layers, strict=True):
        for key, (low, limit, whose) in limits.items():
            if not isinstance(x.get(key), int) or not low <= x[key] <= limit:
                yield Violation("quant", f"quant.json {x['node']}", f"{key} = {x.get(key)} outside {whose} "
                                f"range {low}…{limit}")
        if isinstance(x.get("a_bits"), int) and numerics.always_zero(x["a_bits"], x.get("a_signed") is True):
            yield Violation("quant", f"quant.json {x['node']}", f"signed 1-bit inputs: {numerics.ONE_BIT_SIGNED}")
        yield from _check_slices(build, entry, x)
        for key in ("w_step", "adc_step"):
            steps = np.asarray(x.get(key, []), dtype=np.float64)
            if steps.size not in (1, entry.cout) or not (steps > 0).all():
                yield Violation("quant", f"quant.json {x['node']}",
                                f"{key} must hold 1 or {entry.cout} positive steps")
    yield from _code_ranges(build, [int(x["w_bits"]) for x in layers], [digit_scheme(x) for x in layers])


def _check_slices(build: BuildDir, entry: Layer, x: dict[str, Any]) -> Iterator[Violation]:
    """Recorded cell/DAC widths are the macro's; the layout's slice counts follow the bits."""
    macro, where = build.macro, f"quant.json {x['node']}"
    for key, width in (("cell_bits", macro.cell_bits), ("dac_bits", macro.dac_bits)):
        if key in x and x[key] != width:
            yield Violation("quant", where, f"{key} = {x[key]}, the macro's is {width}")
    want = {"w_slices": slicing.slice_count(int(x["w_bits"]), macro.cell_bits),
            "a_slices": slicing.slice_count(int(x["a_bits"]), macro.dac_bits)}
    for key, value in want.items():
        for source, given in (("layout.json", getattr(entry, key)), ("quant.json", x.get(key, value))):
            if given != value:
                yield Violation("quant", f"{source} {x['node']}", f"{key} = {given}, but "
                                f"{x['w_bits' if key == 'w_slices' else 'a_bits']} bits on "
                                f"{macro.cell_bits if key == 'w_slices' else macro.dac_bits}-bit "
                                f"{'cells' if key == 'w_slices' else 'DACs'} need {value}")


def digit_limits(w_bits: list[int], cell_bits: int, schemes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(layers, max digits)`` inclusive bounds of digit ``j`` of each layer's weights, in each
    layer's digit scheme (``schemes``, default two's complement)."""
    bits = [max(2, min(b, 16)) for b in w_bits] or [2]
    width = max(slicing.slice_count(b, cell_bits) for b in bits)
    lo = np.zeros((len(bits), width), dtype=np.int64)
    hi = np.full((len(bits), width), -1, dtype=np.int64)  # digits a layer does not have: nothing fits
    for i, b in enumerate(bits):
        for j in range(slicing.slice_count(b, cell_bits)):
            lo[i, j], hi[i, j] = slicing.digit_range(b, cell_bits, True, j, schemes[i] if schemes else "twos")
    return lo, hi


def _bounds(key: str) -> tuple[int, int]:
    """The declared range of bits ``key`` (``cimc.options``)."""
    o = OPTIONS[key]
    return int(o.low or 0), int(o.high or 0)


def digit_scheme(layer: dict[str, Any] | None) -> str:
    """A ``quant.json`` layer's weight digit scheme: ``offset`` or ``twos`` (the default)."""
    return "offset" if layer is not None and layer.get("w_digits") == "offset" else "twos"


def _code_ranges(build: BuildDir, w_bits: list[int], schemes: list[str]) -> Iterator[Violation]:
    lo, hi = digit_limits(w_bits, build.macro.cell_bits, schemes)
    own = build.owners
    for m in range(own.shape[0]):
        array = build.macro_weights(m)
        if array is None or not np.issubdtype(array.dtype, np.integer):
            continue
        grid = build.cell_layers[m]
        layer = np.maximum(grid, 0)
        digit = np.clip(np.broadcast_to(own.slices[m], grid.shape), 0, lo.shape[1] - 1)
        values = array.astype(np.int64)
        wide = (grid >= 0) & ((values < lo[layer, digit]) | (values > hi[layer, digit]))
        if wide.any():
            w, b = np.argwhere(wide)[0]
            yield Violation("quant", f"macro {m}", f"{int(wide.sum())} code(s) outside their layer's w_bits / "
                            f"weight digit range, e.g. {int(array[w, b])} on wordline {w} bitline {b} (digit "
                            f"{int(own.slices[m, b])}: {int(lo[layer[w, b], digit[w, b]])}…"
                            f"{int(hi[layer[w, b], digit[w, b]])})")


def read_onnx(build: BuildDir) -> Any:
    """The build's ``model.cim.onnx`` (read like every build file, ``read_bytes``: no link
    followed, nothing outside the build), or ``None`` when it has none."""
    import onnx

    if not build.has(ONNX_FILE):
        return None
    try:
        return onnx.load_model_from_string(read_bytes(build.path / ONNX_FILE))
    except Exception as exc:  # protobuf raises its own DecodeError
        raise BuildError(f"{ONNX_FILE} is not a valid ONNX model ({type(exc).__name__})") from exc


def _onnx_cells(build: BuildDir) -> dict[str, np.ndarray] | None:
    from onnx import numpy_helper

    model = read_onnx(build)
    if model is None:
        return None
    wanted = {f"{name}/cell_codes" for name in build.layer_names}
    return {t.name.rsplit("/", 1)[0]: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in wanted}


def check_onnx_cells(build: BuildDir, result: Validation) -> Iterator[Violation]:
    cells = _onnx_cells(build)
    if cells is None:
        result.notes.append(f"no {ONNX_FILE}: weights not cross-checked against it")
        return
    own = build.owners
    weights = build.weights()
    arrays = np.stack([weights[f"macro_{m:04d}"] for m in range(own.shape[0])] or [np.zeros((1, 1), np.int8)])
    quant = {x.get("node"): x for x in (build.optional_json("quant.json") or {}).get("layers", [])}
    for i, entry in enumerate(build.layout.layers):
        weight = cells.get(entry.node)
        if weight is None:
            yield Violation("cells", ONNX_FILE, f"no cell codes for layer {entry.node}")
            continue
        yield from compare_layer(arrays, own, i, entry, digit_filters(entry, weight, quant.get(entry.node),
                                                                       build.macro.cell_bits))
    result.notes.append(f"every cell compared with the codes in {ONNX_FILE}")


def digit_filters(entry: Layer, weight: np.ndarray, quant: dict[str, Any] | None, cell_bits: int
                  ) -> np.ndarray:
    """The ``cell_codes`` as ``S·Cout·D`` digit filters in the layout's ``(s, o, j)`` order
    (module doc); the weight itself when unsliced or already digits (or not recognisable,
    which ``compare_layer`` reports)."""
    digits, rows = entry.w_slices, len(entry.segments) * entry.cout
    if digits == 1 or weight.ndim != 4 or weight.shape[0] != rows or quant is None:
        return weight
    d = slicing.weight_digits(weight, int(quant["w_bits"]), cell_bits, digit_scheme(quant))  # (D, S·Cout, C, kh, kw)
    return np.ascontiguousarray(np.moveaxis(d, 0, 1)).reshape(rows * digits, *weight.shape[1:])


def expected_columns(entry: Layer, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(S, Cout, Rmax)`` codes each column should hold from its first wordline, and the
    ``(S, Rmax)`` mask of rows that exist, from the grouped-conv weight (module doc): with
    the weight flattened to ``(S, Cout, C·k)``, row ``r`` of segment ``s`` sits at
    ``(r // k − c_lo)·k + r mod k = r − c_lo·k``."""
    bounds = np.array([s.row_start for s in entry.segments] + [entry.segments[-1].row_stop])
    k = entry.kernel[0] * entry.kernel[1]
    segments = len(bounds) - 1
    row = bounds[:-1, None] + np.arange(int(np.diff(bounds).max()))[None, :]  # (S, Rmax)
    mask = row < bounds[1:, None]
    flat = weight.reshape(segments, entry.cout * entry.w_slices, -1)
    index = np.where(mask, row - (bounds[:-1, None] // k) * k, 0)
    index = np.minimum(index, flat.shape[2] - 1)
    cols = np.take_along_axis(flat, np.broadcast_to(index[:, None, :], (segments, flat.shape[1], index.shape[1])), 2)
    return np.where(mask[:, None, :], cols, 0), mask


def compare_layer(arrays: np.ndarray, own: Owners, i: int, entry: Layer, weight: np.ndarray
                   ) -> Iterator[Violation]:
    where = f"layer {i} ({entry.node})"
    digits = entry.w_slices
    segments, cout = len(entry.segments), entry.cout * digits  # digit columns o·D + j
    if weight.ndim != 4 or weight.shape[0] != segments * cout or weight.shape[2:] != tuple(entry.kernel):
        yield Violation("cells", ONNX_FILE, f"{where}: cell codes of shape {list(weight.shape)} do not match "
                        "the layout")
        return
    want, mask = expected_columns(entry, weight)
    m, b = np.nonzero(own.used & (own.layer == i))
    s, o, w0 = own.segment[m, b], own.out_channel[m, b] * digits + own.slices[m, b], own.start[m, b]
    rows = np.arange(want.shape[2])
    bl = own.shape[1]
    flat = ((m * own.wordlines + w0) * bl + b)[:, None] + rows[None, :] * bl  # cell (m, w0 + t, b)
    got = arrays.reshape(-1).take(np.minimum(flat, arrays.size - 1))
    valid = mask[s] & (w0[:, None] + rows[None, :] < own.wordlines) & (o < cout)[:, None]
    differ = valid & (got != want[s, np.minimum(o, cout - 1)])
    if differ.any():
        c, t = np.argwhere(differ)[0]
        yield Violation("cells", where, f"{int(differ.sum())} cell(s) differ from {ONNX_FILE}, e.g. macro {m[c]} "
                        f"wordline {w0[c] + t} bitline {b[c]} (segment {s[c]}, output channel {o[c] // digits}"
                        + (f", weight digit {o[c] % digits}" if digits > 1 else "") + f", row "
                        f"{entry.segments[s[c]].row_start + t}) holds {got[c, t]}, {ONNX_FILE} says "
                        f"{want[s[c], o[c], t]}")
