"""``cimc validate``: check a build directory without trusting any of its files.

Every check recomputes what it verifies from first principles and the build's own inputs,
and reports *all* violations instead of stopping at the first:

* files — ``manifest.json`` against its schema and the supported schema version; the
  sha256 of every file it lists recomputed; no file missing, none unlisted; every JSON
  file with a schema in ``cimc.schemas`` valid against it (``validate_files``).
* layout — macro spec sane; segment bounds recomputed from the tiling mode, kernel and
  wordline count (``segment_bounds``) and every wordline's input channel / kernel position
  from ``r = c·kh·kw + i·kw + j``; every column ``(s, o)`` of every layer placed exactly
  once; no cell claimed twice; no span past the wordlines; segments within the wordline
  limit and conversion rounds within the ADC count; with a known placement policy, every
  column where the policy puts it (``validate_layout``).
* weights — one ``(WL, BL)`` array per macro, idle cells zero, integer cell codes inside
  the cell's narrow signed range (``validate_weights``); with ``quant.json``, bits within
  the macro's cell / DAC / ADC limits and each layer's codes within its ``w_bits``; with
  ``model.cim.onnx``, every cell equal to the codes that model computes with
  (``validate_quant``); and, when the source model is at hand (a zoo name, or ``--model``),
  authenticated by the manifest's sha256 and compiled again, every cell equal to the
  rebuild (``validate_weights``).
* pool — with ``--weight-pool``, ``weight_pool.safetensors``: every index in range, the pool's
  codes re-derived equal to the cells, the report's ``weight_pool`` figures recomputed
  (``check_pool``).
* schedule and report — the graph order from ``graph.txt``; every figure of
  ``report.json``, the table and notes of ``report.md`` and every CIM step of
  ``schedule.json`` recomputed from ``layout.json`` with the cost-model formulas
  (``validate_cost``).
* timeline — ``schedule.json``'s loads and compute phases as a schedule (load before use, no
  slot double-booked, dependencies, buffer capacity, totals re-derived), then recomputed from
  the layout, with ``report.*``'s latency and energy (``check.timeline``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import cimc.schemas as schemas
from cimc.build.directory import sha256
from cimc.build.reader import MANIFEST, BuildDir, read_build, read_bytes
from cimc.check.cost import check_report, check_schedule
from cimc.check.equivalence import check_graph_structure
from cimc.check.layout import check_layout, check_placement_policy
from cimc.check.pool import check_pool
from cimc.check.quant import check_onnx_cells, check_quant
from cimc.check.timeline import check_timeline
from cimc.check.violations import Check, Validation, Violation
from cimc.check.weights import check_reference, check_weight_arrays
from cimc.errors import BuildError, CimcError
from cimc.untrusted import load_json

log = logging.getLogger(__name__)
# version 1 builds lack layout.json's geometry, version 2 the timeline, version 3 the area
KNOWN_SCHEMA_VERSIONS: tuple[int, ...] = ()
OWNER_KEYS = ("layer", "segment", "out_channel", "wordline_start")
WORDLINE_KEYS = ("wordline_channel", "wordline_kernel_pos")


def validate_build(path: str | Path, reference: str | Path | bool = False,
                   extra: Sequence[tuple[str, Check]] = (),
                   progress: Callable[[str], None] | None = None) -> Validation:
    """Run every check on the build at ``path``. ``reference``: ``True`` also compiles the
    zoo source named in the manifest again and compares every cell, a path does so with
    that ONNX file; the rebuild uses *this* cimc, so a build from another version of the
    compiler may legitimately differ. ``extra``: checks of higher layers, run after the
    structural ones — ``cimc.emulator.validate.validate_build`` (what ``cimc validate``
    runs) adds the emulator against onnxruntime on ``model.cim.onnx`` (``outputs``).
    ``progress`` is told each phase (``cimc.progress``)."""
    say = progress or (lambda _: None)
    result = Validation(Path(path))
    say(f"reading {path}")
    build = read_build(path)
    checks: list[tuple[str, Check]] = [
        ("manifest", check_manifest), ("sha256", check_hashes), ("schemas", check_schemas),
        ("layout", check_layout), ("placement", check_placement_policy), ("weights", check_weight_arrays),
        ("quant", check_quant), ("cells", check_onnx_cells), ("pool", check_pool), ("graph", check_graph_structure),
        *extra,
        ("schedule", check_schedule), ("timeline", check_timeline), ("report", check_report)]
    if reference is not False:
        checks.append(("reference", lambda b, r: check_reference(b, r, None if reference is True else reference)))
    for name, check in checks:
        say(f"check {name}")
        result.checks.append(name)
        result.violations += _run(name, check, build, result)
    log.info("validated %s: %d violation(s)", path, len(result.violations))
    return result


def _run(name: str, check: Check, build: BuildDir, result: Validation) -> list[Violation]:
    """A check that cannot even run (the files it reads are broken) is itself a violation."""
    try:
        return list(check(build, result))
    except (CimcError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        log.debug("check %s failed", name, exc_info=True)
        message = exc.message if isinstance(exc, CimcError) else f"{type(exc).__name__}: {exc}"
        return [Violation(name, "build", f"cannot be checked: {message}")]


def supported_versions() -> tuple[int, ...]:
    """The build schema versions this cimc reads: the one it writes, and older ones it knows."""
    from cimc.documents.manifest import SCHEMA_VERSION

    return tuple(sorted({*KNOWN_SCHEMA_VERSIONS, SCHEMA_VERSION}))


def check_manifest(build: BuildDir, result: Validation) -> Iterator[Violation]:
    version = build.manifest.get("schema_version")
    if version not in supported_versions():
        yield Violation("manifest", MANIFEST, f"schema_version {version!r} is not supported "
                        f"(this cimc reads {', '.join(map(str, supported_versions()))}; recompile the model)")
    yield from _schema_violations("manifest", MANIFEST, build.manifest)
    for name in ("layout.json", "report.json"):
        doc = build.layout_json if name == "layout.json" else build.report
        if isinstance(doc, dict) and doc.get("macro") != build.manifest.get("macro"):
            yield Violation("manifest", name, "macro spec differs from the manifest's")


def check_hashes(build: BuildDir, result: Validation) -> Iterator[Violation]:
    listed = build.manifest.get("files")
    if not isinstance(listed, dict):
        yield Violation("sha256", MANIFEST, "no 'files' table of sha256 digests")
        return
    present = {p.name for p in build.path.iterdir() if p.is_symlink() or not p.is_dir()} - {MANIFEST}
    for name in sorted(set(listed) - present):
        yield Violation("sha256", name, "listed in the manifest but missing")
    for name in sorted(present - set(listed)):
        yield Violation("sha256", name, "present but not listed in the manifest")
    for name in sorted(set(listed) & present):
        try:
            digest = sha256(read_bytes(build.path / name))
        except BuildError as exc:
            yield Violation("sha256", name, exc.message)
            continue
        if digest != listed[name]:
            yield Violation("sha256", name, f"sha256 is {digest[:16]}…, the manifest says {str(listed[name])[:16]}…")


def check_schemas(build: BuildDir, result: Validation) -> Iterator[Violation]:
    """Every ``X.json`` of the build whose schema ``X.schema.json`` ships with cimc."""
    for path in sorted(build.path.glob("*.json")):
        if path.name == MANIFEST or not _has_schema(path.stem):
            continue
        try:
            doc = load_json(read_bytes(path), path.name, BuildError)
        except BuildError as exc:
            yield Violation("schemas", path.name, exc.message)
            continue
        if path.stem == "layout" and isinstance(doc, dict):
            doc = yield from _layout_skeleton(doc)
        yield from _schema_violations(path.stem, path.name, doc)


def _layout_skeleton(doc: dict[str, Any]) -> Generator[Violation, None, dict[str, Any]]:
    """``layout.json`` with its long integer lists checked with numpy (integers; bitline
    owner entries ≥ −1) and then cut to one element, and of the regular macro entries only
    the first kept: jsonschema alone walks every number in Python, seconds for a VGG16."""
    bad: list[str] = []
    out = copy.deepcopy({k: v for k, v in doc.items() if k not in ("macros", "layers")})
    out["macros"] = _macro_skeleton(doc.get("macros", []), bad)
    out["layers"] = []
    for layer in doc.get("layers", []):
        if isinstance(layer, dict) and isinstance(layer.get("segments"), list):
            where = f"layer {layer.get('index')}"
            layer = {**layer, "segments": [_cut(x, WORDLINE_KEYS, None, where, bad) if isinstance(x, dict) else x
                                           for x in layer["segments"]]}
        out["layers"].append(layer)
    yield from (Violation("schemas", "layout.json", message) for message in bad)
    return out


def _macro_skeleton(macros: Any, bad: list[str]) -> Any:
    """Irregular entries as they are (the schema judges them), plus the first regular one."""
    if not isinstance(macros, list):
        return macros
    regular = [m for m in macros if isinstance(m, dict) and {"index", *OWNER_KEYS} <= m.keys()
               and type(m["index"]) is int and m["index"] >= 0]
    irregular = [m for m in macros if not any(m is r for r in regular)]
    for key in OWNER_KEYS:
        try:
            array = np.asarray([m[key] for m in regular])
        except ValueError:  # ragged: judge entry by entry
            return irregular + [_cut(m, OWNER_KEYS, -1, f"macro {m['index']}", bad) for m in regular]
        if array.size and (array.dtype.kind != "i" or array.min() < -1):
            bad.append(f"macros: '{key}' must hold integers ≥ -1")
    return irregular + [_cut(m, OWNER_KEYS, -1, "macro", []) for m in regular[:1]]


def _cut(entry: dict[str, Any], keys: tuple[str, ...], minimum: int | None, where: str,
         bad: list[str]) -> dict[str, Any]:
    out = dict(entry)
    for key in keys:
        values = entry.get(key)
        if not isinstance(values, list) or not values:
            continue
        try:
            array = np.asarray(values)
        except ValueError:
            array = np.asarray([None])
        if array.dtype.kind != "i" or (minimum is not None and array.min() < minimum):
            bad.append(f"{where}: '{key}' must hold integers" + (f" ≥ {minimum}" if minimum is not None else ""))
        out[key] = values[:1]
    return out


def _has_schema(stem: str) -> bool:
    try:
        schemas.load(stem)
    except (FileNotFoundError, OSError):
        return False
    return True


def _schema_violations(stem: str, where: str, doc: Any) -> Iterator[Violation]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schemas.load(stem))
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))[:20]:
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        yield Violation("schemas", where, f"{path}: {error.message[:200]}")


def require_ok(result: Validation) -> None:
    """Raise ``BuildError`` (exit 8) listing every violation unless the build is clean."""
    if result.ok:
        return
    count = len(result.violations)
    raise BuildError(f"{count} violation{'s' if count != 1 else ''} in {result.build}",
                     hint="rebuild with `cimc compile`", details=result.to_dict())
