"""The worked example of ``docs/build-format.md``, computed from fresh builds, and an
independent implementation of one CIM layer that reads nothing but the build files.

    python3 scripts/build_format_example.py                 # compile tiny_cnn twice, print the example
    python3 scripts/build_format_example.py --keep DIR      # keep the two builds in DIR/d1, DIR/d2
    python3 scripts/build_format_example.py --update docs/build-format.md   # rewrite the doc's block

``spec_layer`` follows the numerical contract exactly as docs/build-format.md states it
(layout.json, quant.json, graph.json and weights.safetensors; no cimc code), so comparing it
with the emulator checks the document, not just the code (tests/test_build_format_doc.py).
The example's text is printed between the markers that enclose it in the document; the test
compiles again and requires the document's block to be identical.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

F32 = np.float32
#: The example's input: one seeded Gaussian sample of tiny_cnn's input shape.
SEED = 0
INPUT_SHAPE = (1, 3, 8, 8)
#: The example's output pixel (ho, wo) and channel (a border pixel: the top kernel row reads padding).
PIXEL, CHANNEL = (0, 3), 4
#: A pixel and channel of layer 0 whose partial sum the ADC clips; the pixel of the two-segment example.
CLIPPED = ((3, 6), 2)
SEGMENT_PIXEL = (1, 2)
BEGIN = "<!-- build-format-example:begin -->"
END = "<!-- build-format-example:end -->"


# -- reading a build (docs/build-format.md, per file) ---------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    layout: dict[str, Any]
    quant: dict[str, Any]
    graph: dict[str, Any]
    macros: np.ndarray  # (M, WL, BL) integer cell codes


def load_build(folder: str | Path) -> Build:
    root = Path(folder)
    docs = {name: json.loads((root / f"{name}.json").read_text()) for name in ("layout", "quant", "graph")}
    arrays = load_file(str(root / "weights.safetensors"))
    macros = np.stack([arrays[f"macro_{m:04d}"] for m in range(len(docs["layout"]["macros"]))])
    return Build(docs["layout"], docs["quant"], docs["graph"], macros)


def geometry(build: Build, index: int) -> tuple[list[int], list[int], list[int]]:
    """Strides, pads (top, left, bottom, right) and dilations of CIM layer ``index``: the
    attributes of its Conv node in graph.json; a Gemm/MatMul is a 1×1 conv on a 1×1 input."""
    node = next(n for n in build.graph["nodes"] if n["cim_layer"] == index)
    if node["op"] != "Conv":
        return [1, 1], [0, 0, 0, 0], [1, 1]
    a = node["attrs"]
    return list(a["strides"]), list(a["pads"]), list(a["dilations"])


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def digits(q: np.ndarray, count: int, width: int | None) -> list[np.ndarray]:
    """Two's-complement digits of integer codes: lower ``(q >> t·w) & (2^w − 1)``, top ``q >> (n−1)·w``."""
    if count == 1 or width is None:
        return [q]
    return [(q >> (t * width)) & ((1 << width) - 1) for t in range(count - 1)] + [q >> ((count - 1) * width)]


@dataclass(frozen=True)
class Column:
    """One bitline of a layer: segment, output channel, weight digit, and what its cells see."""

    macro: int
    bitline: int
    segment: int
    channel: int
    digit: int
    wordline_start: int
    cells: np.ndarray  # (rows of the segment,) int64
    in_channels: np.ndarray  # absolute input channel of every row (group-relative + g·Cin_g)
    kernel_pos: np.ndarray  # (rows, 2)


def columns(build: Build, index: int) -> list[Column]:
    layer = build.layout["layers"][index]
    kh, kw = layer["kernel"]
    cin_g, cout_g = layer["rows"] // (kh * kw), layer["cout"] // layer["groups"]
    out = []
    for entry in build.layout["macros"]:
        m = entry["index"]
        for b, owner in enumerate(entry["layer"]):
            if owner != index:
                continue
            s, o, w0 = entry["segment"][b], entry["out_channel"][b], entry["wordline_start"][b]
            seg = layer["segments"][s]
            rows = seg["row_stop"] - seg["row_start"]
            group = o // cout_g
            out.append(Column(m, b, s, o, entry["slice"][b], w0, build.macros[m, w0:w0 + rows, b].astype(np.int64),
                              group * cin_g + np.asarray(seg["wordline_channel"], np.int64),
                              np.asarray(seg["wordline_kernel_pos"], np.int64).reshape(-1, 2)))
    return out


def spec_layer(build: Build, index: int, x: np.ndarray) -> dict[str, np.ndarray]:
    """CIM layer ``index`` on its float32 input ``x`` by docs/build-format.md, 'The numerical
    contract': input codes, ADC codes ``(N, Seg·T·S, Cout, Ho, Wo)``, sums ``P``, outputs ``y``."""
    layer, q = build.layout["layers"][index], build.quant["layers"][index]
    strides, pads, dilations = geometry(build, index)
    xin = np.asarray(x, F32) if layer["kind"] == "conv" else np.asarray(x, F32).reshape(-1, x.shape[-1], 1, 1)
    lo, hi = code_range(q["a_bits"], q["a_signed"])
    codes = np.clip(np.rint(np.divide(xin, F32(q["a_step"]), dtype=F32)), lo, hi)
    t_count, s_count = q["a_slices"], q["w_slices"]
    cycles = digits(codes.astype(np.int64), t_count, q["dac_bits"])
    top, left, bottom, right = pads
    padded = [np.pad(e, ((0, 0), (0, 0), (top, bottom), (left, right))) for e in cycles]
    n, _, h, w = codes.shape
    kh, kw = layer["kernel"]
    ho = (h + top + bottom - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (w + left + right - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    seg_count, cout = len(layer["segments"]), layer["cout"]
    p = np.zeros((n, seg_count, t_count, s_count, cout, ho, wo), np.int64)
    for col in columns(build, index):
        rows_h = np.arange(ho)[:, None, None] * strides[0] + col.kernel_pos[None, None, :, 0] * dilations[0]
        rows_w = np.arange(wo)[None, :, None] * strides[1] + col.kernel_pos[None, None, :, 1] * dilations[1]
        for t, e in enumerate(padded):
            seen = e[:, col.in_channels[None, None, :], rows_h, rows_w]  # (N, Ho, Wo, rows)
            p[:, col.segment, t, col.digit, col.channel] = (seen * col.cells).sum(axis=-1)
    shifts = np.zeros(t_count * s_count, np.int64) if q["adc_shift"] is None else np.asarray(q["adc_shift"], np.int64)
    m = shifts.reshape(t_count, s_count)
    adc_step = np.asarray(q["adc_step"], F32).reshape(-1)
    step = np.ldexp(np.broadcast_to(adc_step, (cout,))[None, None, :], -m[:, :, None]).astype(F32)  # (T, S, Cout)
    amax = 2 ** (q["adc_bits"] - 1) - 1
    adc = np.clip(np.rint(np.divide(p.astype(F32), step[None, None, :, :, :, None, None], dtype=F32)), -amax, amax)
    t_idx, j_idx = np.meshgrid(np.arange(t_count), np.arange(s_count), indexing="ij")
    weight = np.ldexp(1.0, j_idx * (q["cell_bits"] or 0) + t_idx * (q["dac_bits"] or 0) - m)  # (T, S), float64
    total = (adc.astype(np.float64) * weight[None, None, :, :, None, None, None]).sum(axis=(1, 2, 3)).astype(F32)
    scale = np.asarray(q["scale"], F32).reshape(1, -1, 1, 1)
    bias = np.asarray(q["bias"], F32).reshape(1, -1, 1, 1)
    y = np.add(np.multiply(total, scale, dtype=F32), bias, dtype=F32)
    return {"input_codes": codes, "adc_codes": adc.reshape(n, -1, cout, ho, wo), "sums": total, "outputs": y,
            "partial_sums": p}


# -- the emulator, for comparison ---------------------------------------------------------------------------------


def emulate(folder: str | Path, x: np.ndarray) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """What cimc computes, through documented interfaces only: the golden vectors of every CIM
    layer (``write_golden``, read back by their ``index.json``) and each CIM layer's float input
    (``model.cim.onnx`` run by onnxruntime with the layer inputs as extra outputs)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from cimc.emulator import Emulator, write_golden

    golden: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="cimc-golden-") as tmp:
        index = write_golden(tmp, Emulator.open(folder), x)
        for layer in index["layers"]:
            golden[layer["node"]] = {k: np.load(Path(tmp) / f["file"]) for k, f in layer["files"].items()}
    graph = json.loads((Path(folder) / "graph.json").read_text())
    wanted = {n["name"]: n["inputs"][0] for n in graph["nodes"] if n["cim_layer"] is not None}
    model = onnx.load(str(Path(folder) / "model.cim.onnx"))
    present = {o.name for o in model.graph.output}
    for tensor in sorted(set(wanted.values()) - present):
        model.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = sorted(set(wanted.values()))
    values = dict(zip(names, session.run(names, {graph["inputs"][0]["name"]: x}), strict=True))
    return golden, {node: values[tensor] for node, tensor in wanted.items()}


def compare(folder: str | Path, x: np.ndarray) -> list[str]:
    """Every CIM layer by ``spec_layer`` against the emulator's golden vectors: the names of
    the layers that agree bit for bit (raises ``AssertionError`` on the first difference)."""
    build = load_build(folder)
    golden, inputs = emulate(folder, x)
    names = []
    for i, layer in enumerate(build.layout["layers"]):
        want, got = golden[layer["node"]], spec_layer(build, i, inputs[layer["node"]])
        for field in ("input_codes", "adc_codes", "sums", "outputs"):
            mine = got[field].reshape(want[field].shape)
            assert np.array_equal(mine, want[field]), f"{layer['node']}: {field} differs from the emulator"
        names.append(layer["node"])
    return names


# -- the worked example ---------------------------------------------------------------------------------------------


def compile_tiny(folder: Path, **options: Any) -> Path:
    import logging

    from cimc.api import CompileOptions, compile_model

    log = logging.getLogger("cimc")
    level = log.level
    log.setLevel(logging.ERROR)  # the synthetic-calibration warning
    try:
        compile_model("tiny_cnn", folder, CompileOptions(**options))
    finally:
        log.setLevel(level)
    return folder


def example_input() -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal(INPUT_SHAPE).astype(F32)


def f32(v: float | np.floating) -> str:
    """The shortest decimal that reads back as this float32."""
    return str(F32(v))


def _header(build: Build, index: int) -> list[str]:
    layer, q = build.layout["layers"][index], build.quant["layers"][index]
    strides, pads, dilations = geometry(build, index)
    shift = q["shift"]
    kh, kw = layer["kernel"]
    lines = [f"layer {index} '{layer['node']}': {layer['op']}, Cin_g·kh·kw = {layer['rows']} rows, "
             f"Cout {layer['cout']}, kernel {kh}x{kw}, strides {strides}, pads {pads}, dilations {dilations}, "
             f"group {layer['groups']}, {len(layer['segments'])} segment(s) "
             + ", ".join(f"[{s['row_start']}, {s['row_stop']})" for s in layer["segments"]),
             f"quant.json: w_bits {q['w_bits']}, a_bits {q['a_bits']}, a_signed {str(q['a_signed']).lower()}, "
             f"adc_bits {q['adc_bits']}, cell_bits {q['cell_bits']}, dac_bits {q['dac_bits']}, "
             f"w_slices {q['w_slices']}, a_slices {q['a_slices']}, adc_shift {json.dumps(q['adc_shift'])}",
             f"  a_step {q['a_step']}, adc_step {q['adc_step']}, scale {q['scale']}"
             + (f" (shift k {shift['k']}, fold {shift['fold']})" if shift else " (no shift)")]
    return lines


def _position(col: Column, pixel: tuple[int, int], strides: list[int], pads: list[int],
              dilations: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Unpadded input row/column every wordline of ``col`` reads for output ``pixel``."""
    h = pixel[0] * strides[0] - pads[0] + col.kernel_pos[:, 0] * dilations[0]
    w = pixel[1] * strides[1] - pads[1] + col.kernel_pos[:, 1] * dilations[1]
    return h, w


def unsliced_example(folder: Path, x: np.ndarray, pixel: tuple[int, int], channel: int) -> list[str]:
    build = load_build(folder)
    traces, inputs = emulate(folder, x)
    index = 0
    layer, q = build.layout["layers"][index], build.quant["layers"][index]
    xin = inputs[layer["node"]]
    got = spec_layer(build, index, xin)
    strides, pads, dilations = geometry(build, index)
    (col,) = [c for c in columns(build, index) if c.channel == channel and c.segment == 0]
    h, w = _position(col, pixel, strides, pads, dilations)
    out = _header(build, index)
    out.append(f"output pixel (n 0, ho {pixel[0]}, wo {pixel[1]}), output channel {channel}, segment 0: "
               f"macro {col.macro}, bitline {col.bitline}, wordlines {col.wordline_start}.."
               f"{col.wordline_start + len(col.cells) - 1}")
    out.append(" wl  ch  (i,j)  h  w             x     x/S_A  code  cell  code·cell")
    total = 0
    for r in range(len(col.cells)):
        inside = 0 <= h[r] < xin.shape[2] and 0 <= w[r] < xin.shape[3]
        value = xin[0, col.in_channels[r], h[r], w[r]] if inside else None
        if value is None:
            code, text, ratio = 0, "pad", "-"
        else:
            code, text = int(got["input_codes"][0, col.in_channels[r], h[r], w[r]]), f32(value)
            ratio = f"{float(np.divide(F32(value), F32(q['a_step']), dtype=F32)):.3f}"
        product = code * int(col.cells[r])
        total += product
        i, j = col.kernel_pos[r]
        out.append(f"{col.wordline_start + r:3d} {col.in_channels[r]:3d}  ({i},{j}) {h[r]:2d} {w[r]:2d} {text:>13} "
                   f"{ratio:>9} {code:5d} {int(col.cells[r]):5d} {product:10d}")
    step = F32(q["adc_step"][0 if len(q["adc_step"]) == 1 else channel])
    adc = int(got["adc_codes"][0, 0, channel, pixel[0], pixel[1]])
    amax = 2 ** (q["adc_bits"] - 1) - 1
    ratio = np.divide(F32(total), step, dtype=F32)
    out.append(f"partial sum p = {total}; ADC: p / S_ADC = {total} / {f32(step)} = {f32(ratio)} -> rint "
               f"{int(np.rint(ratio))} -> clip to [-{amax}, {amax}] = {adc}")
    big_p = got["sums"][0, channel, pixel[0], pixel[1]]
    scale, bias = F32(q["scale"][0]), F32(q["bias"][channel])
    y = got["outputs"][0, channel, pixel[0], pixel[1]]
    out.append(f"P = sum over 1 segment = {f32(big_p)}; y = fl(fl(P·scale) + b') = fl(fl({f32(big_p)}·{f32(scale)}) + "
               f"{f32(bias)}) = {f32(y)}")
    clip_pixel, clip_channel = CLIPPED
    p = int(got["partial_sums"][0, 0, 0, 0, clip_channel, *clip_pixel])
    ratio = np.divide(F32(p), F32(q["adc_step"][0]), dtype=F32)
    out.append(f"(clipping, same layer, pixel {clip_pixel}, channel {clip_channel}: p = {p}, p / S_ADC = {f32(ratio)} "
               f"-> rint {int(np.rint(ratio))} -> clip {int(got['adc_codes'][0, 0, clip_channel, *clip_pixel])})")
    nxt = 1
    nq = build.quant["layers"][nxt]
    relu = max(F32(y), F32(0))
    code = traces[build.layout["layers"][nxt]["node"]]["input_codes"][0, channel, pixel[0], pixel[1]]
    ratio = np.divide(relu, F32(nq["a_step"]), dtype=F32)
    out.append(f"next layer: Relu(y) = {f32(relu)}; layer {nxt}'s DAC code = clip(rint({f32(relu)} / "
               f"{f32(nq['a_step'])}), 0, {2 ** nq['a_bits'] - 1}) = clip(rint({f32(ratio)})) = {int(code)}")
    trace = traces[layer["node"]]
    assert trace["adc_codes"][0, 0, channel, pixel[0], pixel[1]] == adc and total == got["partial_sums"][
        0, 0, 0, 0, channel, pixel[0], pixel[1]]
    _check_emulator(trace, channel, pixel, big_p, y)
    return out


def _check_emulator(trace: dict[str, np.ndarray], channel: int, pixel: tuple[int, int], big_p: object,
                    y: object) -> None:
    """The emulator's recorded sum ``P`` and output ``y`` at (0, channel, pixel) are the example's."""
    at = (0, channel, *pixel)
    assert trace["sums"][at] == big_p and trace["outputs"][at] == y, (trace["sums"][at], big_p)


def segments_example(folder: Path, x: np.ndarray, pixel: tuple[int, int], channel: int) -> list[str]:
    """Two segments of the last conv: digital accumulation of the ADC codes."""
    build = load_build(folder)
    traces, inputs = emulate(folder, x)
    index = 2
    layer, q = build.layout["layers"][index], build.quant["layers"][index]
    got = spec_layer(build, index, inputs[layer["node"]])
    out = _header(build, index)
    cols = {c.segment: c for c in columns(build, index) if c.channel == channel}
    step = F32(q["adc_step"][0])
    parts = []
    for s in range(len(layer["segments"])):
        p = int(got["partial_sums"][0, s, 0, 0, channel, pixel[0], pixel[1]])
        a = int(got["adc_codes"][0, s, channel, pixel[0], pixel[1]])
        parts.append(a)
        c = cols[s]
        out.append(f"segment {s}: bitline {c.bitline}, {len(c.cells)} wordlines: p_{s} = {p}, "
                   f"p_{s} / S_ADC = {f32(np.divide(F32(p), step, dtype=F32))} -> ADC code {a}")
    big_p = got["sums"][0, channel, pixel[0], pixel[1]]
    y = got["outputs"][0, channel, pixel[0], pixel[1]]
    out.append(f"pixel (0, {pixel[0]}, {pixel[1]}), channel {channel}: P = {' + '.join(map(str, parts))} = "
               f"{f32(big_p)}; y = {f32(big_p)}·{f32(q['scale'][0])} + {f32(q['bias'][channel])} = {f32(y)}")
    trace = traces[layer["node"]]
    _check_emulator(trace, channel, pixel, big_p, y)
    return out


def sliced_example(folder: Path, x: np.ndarray, pixel: tuple[int, int], channel: int) -> list[str]:
    build = load_build(folder)
    traces, inputs = emulate(folder, x)
    index = 0
    layer, q = build.layout["layers"][index], build.quant["layers"][index]
    xin = inputs[layer["node"]]
    got = spec_layer(build, index, xin)
    strides, pads, dilations = geometry(build, index)
    cols = sorted((c for c in columns(build, index) if c.channel == channel and c.segment == 0), key=lambda c: c.digit)
    h, w = _position(cols[0], pixel, strides, pads, dilations)
    c_bits, d_bits, t_count, s_count = q["cell_bits"], q["dac_bits"], q["a_slices"], q["w_slices"]
    out = _header(build, index)
    out.append(f"output pixel (n 0, ho {pixel[0]}, wo {pixel[1]}), output channel {channel}, segment 0: "
               + ", ".join(f"digit j={c.digit} on macro {c.macro} bitline {c.bitline}" for c in cols))
    heads = " ".join(f"e_{t:d}" for t in range(t_count)) + "  " + " ".join(f"d_{j:d}" for j in range(s_count))
    out.append(f" wl  ch  (i,j)  h  w             x  code {heads}  w_q = Σ 2^(4j)·d_j")
    cycles = digits(got["input_codes"].astype(np.int64), t_count, d_bits)
    n_rows = len(cols[0].cells)
    e = np.zeros((t_count, n_rows), np.int64)
    for r in range(n_rows):
        inside = 0 <= h[r] < xin.shape[2] and 0 <= w[r] < xin.shape[3]
        ch = cols[0].in_channels[r]
        code = int(got["input_codes"][0, ch, h[r], w[r]]) if inside else 0
        for t in range(t_count):
            e[t, r] = int(cycles[t][0, ch, h[r], w[r]]) if inside else 0
        d = [int(c.cells[r]) for c in cols]
        wq = sum(dj << (j * c_bits) for j, dj in enumerate(d))
        i, j = cols[0].kernel_pos[r]
        text = f32(xin[0, ch, h[r], w[r]]) if inside else "pad"
        out.append(f"{cols[0].wordline_start + r:3d} {ch:3d}  ({i},{j}) {h[r]:2d} {w[r]:2d} {text:>13} {code:5d} "
                   + " ".join(f"{v:3d}" for v in e[:, r]) + "  " + " ".join(f"{v:3d}" for v in d) + f"  {wq:5d}")
    shifts = q["adc_shift"] or [0] * (t_count * s_count)
    step0 = F32(q["adc_step"][0])
    out.append(f"conversions (t, j), S_ADC = {f32(step0)}:")
    out.append("  t j  m  step=S_ADC·2^-m    p_tj      p/step  ADC  weight 2^(4j+4t-m)  weight·ADC")
    total = 0.0
    for t in range(t_count):
        for j, c in enumerate(cols):
            p = int((e[t] * c.cells).sum())
            assert p == got["partial_sums"][0, 0, t, j, channel, pixel[0], pixel[1]]
            m = shifts[t * s_count + j]
            step = F32(np.ldexp(step0, -m))
            a = int(got["adc_codes"][0, t * s_count + j, channel, pixel[0], pixel[1]])
            weight = 2.0 ** (j * c_bits + t * d_bits - m)
            total += weight * a
            out.append(f"  {t} {j} {m:2d} {f32(step):>15} {p:7d} {f32(np.divide(F32(p), step, dtype=F32)):>11} "
                       f"{a:4d} {weight:19g} {weight * a:11g}")
    big_p = got["sums"][0, channel, pixel[0], pixel[1]]
    assert F32(total) == big_p
    y = got["outputs"][0, channel, pixel[0], pixel[1]]
    out.append(f"P = {f32(big_p)}; y = fl(fl(P·{f32(q['scale'][0])}) + {f32(q['bias'][channel])}) = {f32(y)}")
    trace = traces[layer["node"]]
    assert np.array_equal(trace["adc_codes"][0, :, channel, pixel[0], pixel[1]],
                          got["adc_codes"][0, :, channel, pixel[0], pixel[1]])
    _check_emulator(trace, channel, pixel, big_p, y)
    return out


def example_text(unsliced: Path, sliced: Path) -> str:
    x = example_input()
    lines = ["A. unsliced layer (cimc compile tiny_cnn)", *unsliced_example(unsliced, x, PIXEL, CHANNEL), "",
             "B. two segments (same build)", *segments_example(unsliced, x, SEGMENT_PIXEL, 0), "",
             "C. sliced layer (cimc compile tiny_cnn --w-bits 8 --a-bits 8)",
             *sliced_example(sliced, x, PIXEL, CHANNEL)]
    return "\n".join(lines) + "\n"


def document_block(path: str | Path) -> str:
    """The example as the document holds it (between the markers, without the code fence)."""
    text = Path(path).read_text(encoding="utf-8")
    body = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    lines = body.split("\n")
    assert lines[0].startswith("```") and lines[-1] == "```", "the example must be one fenced block"
    return "\n".join(lines[1:-1]) + "\n"


def update_document(path: str | Path, example: str) -> None:
    """Replace the fenced block between the markers of ``path`` by ``example``."""
    text = Path(path).read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    Path(path).write_text(f"{head}{BEGIN}\n```text\n{example}```\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="compile into DIR/d1 and DIR/d2 and keep them")
    parser.add_argument("--update", type=Path, help="write the example into this document's marked block")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cimc-example-") as tmp:
        root = args.keep or Path(tmp)
        d1 = compile_tiny(root / "d1")
        d2 = compile_tiny(root / "d2", w_bits=8, a_bits=8)
        x = example_input()
        for folder in (d1, d2):
            compare(folder, x)  # the whole of every layer, not just the example's pixel
        text = example_text(d1, d2)
        if args.update:
            update_document(args.update, text)
        print(text, end="")


if __name__ == "__main__":
    main()
