"""Weight checks of ``cimc validate``: the macro arrays against the layout and a reference.

Structure (always): ``weights.safetensors`` holds exactly ``macro_0000 … macro_{M−1}``,
each ``(WL, BL)``; a cell outside every span of ``layout.json`` holds 0; an integer array
holds cell codes in the narrow signed range ``|q| ≤ 2^(cell_bits−1) − 1``
(docs/build-format.md, 'weights.safetensors'), or, on a bitline holding weight digit ``j`` of
a bit-sliced layer (``w_slices = D > 1``), a digit that a ``c``-bit cell stores:
``[0, 2^c − 1]`` for a lower digit ``j < D − 1`` (``[−2^(c−1), 2^(c−1) − 1]`` when
``quant.json`` says the layer's ``w_digits`` are ``offset``), and ``[−2^(c−1), 2^(c−1) − 1]`` for the most
significant (signed, offset scheme; the layer's exact top-digit range is checked against
``quant.json`` in ``validate_quant``); a float array holds finite numbers.

Values (on request, ``--rebuild`` / ``--model``): the source model named by the manifest —
a zoo model, or the ONNX file passed with ``--model`` — is re-imported, its sha256 compared
with the manifest's, compiled by this cimc with the manifest's options and macro, and every
cell of the rebuilt arrays compared with the build's. A flipped weight code or a column
moved in the arrays (or in the layout and the arrays together) then differs from the
rebuild. Each differing macro is one violation naming its first cells (layer, segment,
output and input channel, kernel position). A build made by another version of the
compiler may differ legitimately (quantization changes codes by ±1), hence opt-in; the
always-on cross-check against ``model.cim.onnx`` is in ``validate_quant``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from cimc.build.cell_map import Owners, describe_cell
from cimc.build.reader import BuildDir
from cimc.check.violations import Validation, Violation
from cimc.errors import CimcError
from cimc.quant.numerics import signed_max

log = logging.getLogger(__name__)
EXAMPLES = 3


def check_weight_arrays(build: BuildDir, result: Validation) -> Iterator[Violation]:
    weights, own, macro = build.weights(), build.owners, build.macro
    names = {f"macro_{m:04d}" for m in range(own.shape[0])}
    for name in sorted(set(weights) - names):
        yield Violation("weights", name, "array for a macro the layout does not have")
    for m in range(own.shape[0]):
        array = weights.get(f"macro_{m:04d}")
        if array is None:
            yield Violation("weights", f"macro {m}", "no array in weights.safetensors")
        elif array.shape != (macro.wordlines, macro.bitlines):
            yield Violation("weights", f"macro {m}", f"array of shape {array.shape}, the macro is "
                            f"{macro.wordlines}×{macro.bitlines}")
        else:
            yield from _check_cells(build, own, m, array)


def _check_cells(build: BuildDir, own: Owners, m: int, array: np.ndarray) -> Iterator[Violation]:
    occupied = build.cell_layers[m] >= 0
    idle = (array != 0) & ~occupied
    if idle.any():
        yield Violation("weights", f"macro {m}", f"{int(idle.sum())} idle cell(s) hold non-zero values, e.g. "
                        + _cells(np.argwhere(idle)))
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = cell_limits(build, own, m)
        values = array.astype(np.int64)
        wide = occupied & ((values < lo) | (values > hi))
        if wide.any():
            w, b = np.argwhere(wide)[0]
            yield Violation("weights", f"macro {m}", f"{int(wide.sum())} cell code(s) outside what a "
                            f"{build.macro.cell_bits}-bit cell holds, e.g. {int(values[w, b])} outside "
                            f"{int(lo[w, b])}…{int(hi[w, b])} at " + _cells(np.argwhere(wide)))
    elif not np.isfinite(array).all():
        yield Violation("weights", f"macro {m}", f"{int((~np.isfinite(array)).sum())} non-finite value(s)")


def cell_limits(build: BuildDir, own: Owners, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(WL, BL)`` inclusive bounds of what each cell of macro ``m`` may hold (module doc)."""
    c = build.macro.cell_bits
    narrow = signed_max(c)
    digits = np.array([x.w_slices for x in build.layout.layers] or [1])
    offset = np.array(offset_layers(build, len(digits)))
    layer, digit = own.layer[m], own.slices[m]
    sliced = (layer >= 0) & (digits[np.maximum(layer, 0)] > 1)
    lower = sliced & (digit < digits[np.maximum(layer, 0)] - 1) & ~offset[np.maximum(layer, 0)]
    lo = np.where(lower, 0, np.where(sliced, -(narrow + 1), -narrow))
    hi = np.where(lower, (1 << c) - 1, narrow)
    shape = (build.macro.wordlines, 1)
    return np.tile(lo, shape), np.tile(hi, shape)


def offset_layers(build: BuildDir, count: int) -> list[bool]:
    """Per layout layer, whether ``quant.json`` says its weight digits are offset (all signed)."""
    quant = build.optional_json("quant.json")
    layers = quant.get("layers", []) if isinstance(quant, dict) else []
    names = {x.get("node"): x.get("w_digits") == "offset" for x in layers if isinstance(x, dict)}
    return [names.get(x.node, False) for x in build.layout.layers] or [False] * count


def _cells(where: np.ndarray) -> str:
    return ", ".join(f"wordline {w} bitline {b}" for w, b in where[:EXAMPLES].tolist())


def check_reference(build: BuildDir, result: Validation, model: str | Path | None) -> Iterator[Violation]:
    """Compare every cell with the arrays rebuilt from the authenticated source model."""
    rebuilt = _rebuild(build, result, model)
    if isinstance(rebuilt, str):  # asked for a rebuild and got none: the build is not proven
        yield Violation("reference", str(model or "source"), f"weights not compared: {rebuilt}")
        return
    weights, own = build.weights(), build.owners
    for name in sorted(set(rebuilt) - set(weights)):
        yield Violation("reference", name, "the source model needs this macro, the build has none")
    for name in sorted(set(rebuilt) & set(weights)):
        got, want = weights[name], rebuilt[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            yield Violation("reference", name, f"{got.dtype}{list(got.shape)}, a rebuild gives "
                            f"{want.dtype}{list(want.shape)}")
            continue
        differ = np.argwhere(got != want)
        if differ.size:
            m = int(name.split("_")[1])
            shown = "; ".join(_explain(build, own, m, w, b, got, want) for w, b in differ[:EXAMPLES].tolist())
            yield Violation("reference", f"macro {m}", f"{len(differ)} cell(s) differ from the source model "
                            f"compiled again by this cimc: {shown}")
    result.notes.append(f"weights compared cell by cell with the source model ({len(rebuilt)} macros)")


def _explain(build: BuildDir, own: Owners, m: int, w: int, b: int, got: np.ndarray, want: np.ndarray) -> str:
    cell = describe_cell(build.layout, own, m, w, b)
    head = f"wordline {w} bitline {b} holds {got[w, b].item()!r}, expected {want[w, b].item()!r}"
    if cell["idle"]:
        return head + " (idle in layout.json)"
    digit = f", weight digit {cell['slice']} of {cell['w_slices']}" if cell["w_slices"] > 1 else ""
    return (head + f" ({cell['layer']} segment {cell['segment']}, output channel {cell['out_channel']}{digit}, "
            f"input channel {cell['in_channel']}, kernel {tuple(cell['kernel_pos'])})")


def _rebuild(build: BuildDir, result: Validation, model: str | Path | None) -> dict[str, np.ndarray] | str:
    """The weight arrays of the source compiled again, or why there are none: no source to
    compile, options that cannot be replayed, a compile that failed (e.g. calibration data
    not here any more), or a source that is not the build's (sha256). ``--rebuild`` asks for
    a proof, so each of those is a violation, not a note."""
    source = build.manifest.get("input", {})
    source = source if isinstance(source, dict) else {}
    target = model if model is not None else (source.get("name") if source.get("kind") == "zoo" else None)
    if target is None:
        return "the build was not compiled from a zoo model: pass --model FILE.onnx"
    options = _options(build)
    if isinstance(options, str):
        return options
    try:
        return _compile_weights(build, result, str(target), options)
    except CimcError as exc:
        return f"compiling '{target}' again failed: {exc.message}"
    except (TypeError, ValueError) as exc:  # options of the wrong type in the manifest
        return f"compiling '{target}' again failed: {type(exc).__name__}"


def _options(build: BuildDir) -> Any:
    """The manifest's compile options, or why they cannot be replayed."""
    from cimc.api import CompileOptions

    recorded = build.manifest.get("options", {})
    if not isinstance(recorded, dict):
        return "the manifest's options are not a table"
    recorded = dict(recorded)
    known = {f.name for f in fields(CompileOptions)}
    unknown = sorted(set(recorded) - known)
    if unknown:
        return f"options {', '.join(unknown)[:200]} cannot be replayed"
    shapes = recorded.pop("input_shapes", None) or None
    return CompileOptions(**recorded, input_shapes={k: tuple(v) for k, v in shapes.items()} if shapes else None,
                          macro=build.macro, bitline_budget=build.manifest.get("bitline_budget"))


def _compile_weights(build: BuildDir, result: Validation, target: str, options: Any) -> dict[str, np.ndarray] | str:
    from safetensors.numpy import load

    from cimc.api import compile_graph, load_source
    from cimc.backend.macro import build_files
    from cimc.build.file_parts import file_bytes

    graph, source = load_source(target, options)
    if source["sha256"] != build.manifest.get("input", {}).get("sha256"):
        return (f"'{target}' (sha256 {source['sha256'][:12]}…) is not the model this build was compiled "
                f"from (sha256 {str(build.manifest.get('input', {}).get('sha256'))[:12]}…)")
    graph, ctx = compile_graph(graph, options)
    files = build_files(graph, ctx.macro, options.bitline_budget, source, options.public())
    return dict(load(file_bytes(files.files["weights.safetensors"])))
