"""Reading a build directory for the emulator, trusting nothing: every file the emulator uses
must be listed in ``manifest.json`` with its sha256, the JSON files must match their
schemas, and the macro arrays must be integer cell codes of the layout's shape. The JSON
files are then parsed into their typed models (``cimc.documents``).

The emulator reads ``manifest.json``, ``layout.json``, ``quant.json``, ``graph.json``,
``weights.safetensors`` and ``digital.safetensors`` — never ``model.cim.onnx`` nor the source
model. A file that is a symbolic link or not a regular file is refused before it is read
(``cimc.build.reader.read_bytes``). Every failure is a ``BuildError`` (exit code 8) naming the file and what is wrong.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors

import cimc.schemas as schemas
from cimc.build.reader import read_bytes
from cimc.documents import GraphDoc, Layout, Quant
from cimc.documents.parse import parse
from cimc.errors import BuildError
from cimc.untrusted import check_safetensors, load_json

MANIFEST = "manifest.json"
JSON_FILES = ("layout", "quant", "graph")
ARRAY_FILES = ("weights.safetensors", "digital.safetensors")
OWNER_KEYS = ("layer", "segment", "out_channel", "wordline_start")
#: The per-bitline weight digit index of bit-sliced builds (``cimc.quant.slicing``), next to the owner lists.
SLICE_KEY = "slice"


@dataclass(frozen=True)
class BuildFiles:
    """The verified contents of a build directory."""

    path: Path
    hashes: dict[str, str]
    """The manifest's sha256 of every file, by name."""
    layout: Layout
    quant: Quant
    graph: GraphDoc
    macros: np.ndarray
    constants: dict[str, np.ndarray]


def read_build(path: str | Path) -> BuildFiles:
    """Read and authenticate the files the emulator needs (module doc)."""
    folder = Path(path)
    if not folder.is_dir():
        raise BuildError(f"{folder} is not a build directory")
    listed: dict[str, str] = _json(folder, MANIFEST, "manifest")["files"]
    needed = [f"{n}.json" for n in JSON_FILES] + list(ARRAY_FILES)
    missing = [n for n in needed if n not in listed]
    if missing:
        raise BuildError(f"build {folder.name} lacks {', '.join(missing)}",
                         hint="the build predates quantized builds or was not quantized: recompile it")
    data = {name: _authentic(folder, name, listed[name]) for name in needed}
    layout = parse(Layout, "layout.json", _parse("layout.json", data["layout.json"], "layout"))
    quant = parse(Quant, "quant.json", _parse("quant.json", data["quant.json"], "quant"))
    graph = parse(GraphDoc, "graph.json", _parse("graph.json", data["graph.json"], "graph"))
    macros = _macros(data["weights.safetensors"], layout)
    constants = _arrays("digital.safetensors", data["digital.safetensors"])
    return BuildFiles(folder, listed, layout, quant, graph, macros, constants)


def _authentic(folder: Path, name: str, digest: str) -> bytes:
    data = read_bytes(folder / name)
    if hashlib.sha256(data).hexdigest() != digest:
        raise BuildError(f"{name} does not match the sha256 in manifest.json: the file was modified",
                         hint="recompile the build; do not edit its files")
    return data


def _json(folder: Path, name: str, schema: str) -> dict[str, Any]:
    return _parse(name, read_bytes(folder / name), schema)


def _parse(name: str, data: bytes, schema: str) -> dict[str, Any]:
    doc = load_json(data, name, BuildError)  # nesting bounded (cimc.untrusted)
    try:
        _validator(schema).validate(_skeleton(doc) if schema == "layout" else doc)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise BuildError(f"{name} does not match its schema at {where}: {exc.message}") from exc
    return dict(doc)


@functools.cache
def _validator(name: str) -> Any:
    """A validator of ``_schema(name)``, made (and the schema itself checked) once: checking
    the schema against its meta-schema is most of the time of a ``jsonschema.validate``."""
    schema = _schema(name)
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def _schema(name: str) -> dict[str, Any]:
    """The schema of a build file; of the manifest, only what the emulator relies on (the
    tool and the file hashes), so a figure it does not read cannot stop it."""
    full = schemas.load(name)
    if name != "manifest":
        return full
    return {"type": "object", "required": ["tool", "files"],
            "properties": {"tool": full["properties"]["tool"], "files": full["properties"]["files"]}}


def _skeleton(layout: Any) -> Any:
    """``layout.json`` without its long per-bitline and per-wordline lists, which would make
    schema validation slow: the typed model checks them (``documents.parse``), and the emulator the
    owner lists' lengths (``check.emulator.owner_arrays``)."""
    if not isinstance(layout, dict):
        return layout
    out = dict(layout)
    if isinstance(out.get("macros"), list):
        out["macros"] = [{**m, **{k: [] for k in (*OWNER_KEYS, SLICE_KEY) if isinstance(m.get(k), list)}}
                         if isinstance(m, dict) else m for m in out["macros"]]
    if isinstance(out.get("layers"), list):
        out["layers"] = [_layer_skeleton(layer) for layer in out["layers"]]
    return out


def _layer_skeleton(layer: Any) -> Any:
    if not isinstance(layer, dict) or not isinstance(layer.get("segments"), list):
        return layer
    maps: dict[str, list[Any]] = {"wordline_channel": [], "wordline_kernel_pos": []}
    return {**layer, "segments": [{**seg, **maps} if isinstance(seg, dict) else seg for seg in layer["segments"]]}


def _arrays(name: str, data: bytes) -> dict[str, np.ndarray]:
    check_safetensors(data, name, BuildError)
    try:
        return dict(load_safetensors(data))
    except (SafetensorError, ValueError) as exc:
        raise BuildError(f"{name} is not a valid safetensors file: {exc}") from exc


def _macros(data: bytes, layout: Layout) -> np.ndarray:
    """``(M, WL, BL)`` integer codes, one array per macro of ``layout.json``."""
    arrays = _arrays("weights.safetensors", data)
    count = len(layout.macros)
    wl, bl = layout.macro.wordlines, layout.macro.bitlines
    expected = [f"macro_{m:04d}" for m in range(count)]
    if sorted(arrays) != expected:
        raise BuildError(f"weights.safetensors holds {len(arrays)} arrays; layout.json has {count} macros "
                         f"(expected keys macro_0000 … macro_{count - 1:04d})")
    for key in expected:
        arr = arrays[key]
        if arr.shape != (wl, bl):
            raise BuildError(f"weights.safetensors: {key} has shape {list(arr.shape)}, the macro is {wl}×{bl}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise BuildError(f"weights.safetensors: {key} holds {arr.dtype} values, not integer cell codes",
                             hint="recompile with this version of cimc (builds store quantized codes)")
    if not count:
        return np.zeros((0, wl, bl), dtype=np.int8)
    return np.stack([arrays[k] for k in expected])
