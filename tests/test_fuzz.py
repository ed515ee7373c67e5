"""Bounded fuzzing (hypothesis) of the loader and of the whole compile on mutated valid models.

Seeds are the valid models of ``tests/corpus``. Two mutators:

* bytes: flips, overwrites, truncations and insertions in the serialized file;
* fields: the parsed protobuf is edited — dims of initializers and graph inputs, attribute
  values, op types, tensor and node names, initializer data (random bytes, NaN), data types,
  opset and IR versions, dropped/duplicated/swapped nodes and initializers.

Every mutant is written to a file and compiled (``import_onnx`` → passes → backend files).
The only allowed outcomes are a success whose build ``cimc validate`` accepts (written with
``write_build`` and checked by ``validate_build``: no NaN build, nothing the emulator would run
differently from ``model.cim.onnx``) or a typed ``CimcError`` with a one-line message. A
``PassError`` (exit code 9: a pass failed on a model the frontend accepted) and any other
exception (exit code 1) fail the test: both are bugs in cimc.

Default run: 800 byte and 1,200 field mutants, about 30 s with every successful build validated, and 60
edited builds (derandomized, so CI is stable).
A longer run for developers::

    CIMC_FUZZ_EXAMPLES=20000 python3 -m pytest tests/test_fuzz.py -q          # same examples as CI, more
    CIMC_FUZZ_EXAMPLES=20000 CIMC_FUZZ_RANDOM=1 python3 -m pytest tests/test_fuzz.py -q   # fresh examples

and ``python3 -m pytest -m slow tests/test_fuzz.py`` runs 6,000 more examples (both mutators), also
derandomized: CI must not pass or fail by chance. Fresh examples are a developer's run
(``CIMC_FUZZ_RANDOM=1``); each failure it finds becomes a regression test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimc.api import CompileOptions, compile_graph
from cimc.backend.macro import build_files
from cimc.build.directory import write_build
from cimc.emulator.validate import validate_build
from cimc.errors import CimcError, PassError
from cimc.frontend import import_onnx
from tests.corpus.make_corpus import HERE

SEEDS = [(HERE / name).read_bytes() for name in ("valid.onnx", "residual.onnx", "unsorted.onnx")]
EXAMPLES = int(os.environ.get("CIMC_FUZZ_EXAMPLES", "0"))
log = logging.getLogger(__name__)
OPS = ["Conv", "Relu", "Add", "Gemm", "MatMul", "MaxPool", "AveragePool", "Reshape", "Flatten", "Concat", "Pad",
       "Clip", "Softmax", "BatchNormalization", "Identity", "Dropout", "Transpose", "Slice", "Sum", "Mul",
       "ConstantOfShape", "Expand", "Loop", "If", "Erf", "Shape", "Gather", "Range", "Tile", "", "Conv\0"]
INTS = st.one_of(st.integers(-3, 9), st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**40, 2**62, -(2**63)]))
NAMES = st.one_of(st.sampled_from(["x", "y", "w", "c", "", "../x", "a" * 300]), st.text(max_size=12))
MODELS = st.sampled_from(range(len(SEEDS)))


def run_settings(default: int) -> Callable[[Any], Any]:
    examples = EXAMPLES or default
    return settings(max_examples=examples, deadline=None, derandomize=not os.environ.get("CIMC_FUZZ_RANDOM"),
                    suppress_health_check=list(HealthCheck), database=None)


def compile_bytes(data: bytes, folder: Path) -> str:
    """Compile ``data`` as a model file; returns the outcome (``ok`` or the error kind)."""
    path = folder / "mutant.onnx"
    path.write_bytes(data)
    try:
        graph = import_onnx(path, max_bytes=1 << 20)
        options = CompileOptions(map_fc=True)
        graph, ctx = compile_graph(graph, options)
        source = {"kind": "onnx", "name": "mutant.onnx", "sha256": "0" * 64}  # the manifest wants 64 hex digits
        build = build_files(graph, ctx.macro, None, source, options.public())
    except PassError:
        raise  # exit 9 on generated input: a bug
    except CimcError as exc:
        assert exc.message and "\n" not in exc.message and len(exc.message) < 5000
        return exc.kind
    write_build(folder / "build", build.files, build.manifest, force=True)
    result = validate_build(folder / "build")
    assert result.ok, [str(v) for v in result.violations]
    return "ok"


# -- byte mutations ------------------------------------------------------------------------------
@st.composite
def byte_mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(MODELS)])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


# -- field mutations -----------------------------------------------------------------------------
def _pick(draw: st.DrawFn, items: Any) -> Any:
    return items[draw(st.integers(0, len(items) - 1))] if len(items) else None


def _dims(draw: st.DrawFn, m: onnx.ModelProto) -> None:
    tensor = _pick(draw, m.graph.initializer)
    if tensor is not None and len(tensor.dims):
        tensor.dims[draw(st.integers(0, len(tensor.dims) - 1))] = draw(INTS)


def _input_dims(draw: st.DrawFn, m: onnx.ModelProto) -> None:
    vi = _pick(draw, [*m.graph.input, *m.graph.output])
    dims = vi.type.tensor_type.shape.dim
    if len(dims):
        dim = dims[draw(st.integers(0, len(dims) - 1))]
        if draw(st.booleans()):
            dim.dim_value = max(draw(INTS), 0)
        else:
            dim.dim_param = draw(NAMES)


def _attr(draw: st.DrawFn, m: onnx.ModelProto) -> None:
    node = _pick(draw, m.graph.node)
    attr = _pick(draw, node.attribute)
    if attr is None:
        node.attribute.append(onnx.helper.make_attribute(draw(st.sampled_from(["axis", "group", "pads"])), 0))
    elif len(attr.ints):
        attr.ints[draw(st.integers(0, len(attr.ints) - 1))] = draw(INTS)
    elif attr.type == onnx.AttributeProto.INT:
        attr.i = draw(INTS)
    elif attr.type == onnx.AttributeProto.FLOAT:
        attr.f = draw(st.floats(allow_nan=True, width=32))


def _op(draw: st.DrawFn, m: onnx.ModelProto) -> None:
    _pick(draw, m.graph.node).op_type = draw(st.sampled_from(OPS))


def _rename(draw: st.DrawFn, m: onnx.ModelProto) -> None:
    node = _pick(draw, m.graph.node)
    where = draw(st.sampled_from(["input", "output", "name"]))
    if where == "name":
        node.name = draw(NAMES)
        return
    names = node.input if where == "input" else node.output
    if len(names):
        others = [t for n in m.graph.node for t in n.output] + [t.name for t in m.graph.initializer]
        names[draw(st.integers(0, len(names) - 1))] = draw(st.one_of(NAMES, st.sampled_from(others)))


def _data(draw: st.DrawFn, m: onnx.ModelProto) -> None:
    tensor = _pick(draw, m.graph.initializer)
    if tensor is None:
        return
    if draw(st.booleans()):
        tensor.raw_data = draw(st.binary(max_size=64))
    elif tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.raw_data) >= 4 and len(tensor.raw_data) % 4 == 0:
        values = np.frombuffer(tensor.raw_data, np.float32).copy()
        values[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -1e38, 0.0]))
        tensor.raw_data = values.tobytes()
    else:
        tensor.data_type = draw(st.integers(0, 30))


def _structure(draw: st.DrawFn, m: onnx.ModelProto) -> None:
    kind = draw(st.sampled_from(["drop_node", "dup_node", "swap", "drop_init", "opset", "ir"]))
    nodes, inits = m.graph.node, m.graph.initializer
    if kind == "drop_node" and len(nodes) > 1:
        del nodes[draw(st.integers(0, len(nodes) - 1))]
    elif kind == "dup_node":
        nodes.append(_pick(draw, nodes))
    elif kind == "swap" and len(nodes) > 1:
        i, j = draw(st.integers(0, len(nodes) - 1)), draw(st.integers(0, len(nodes) - 1))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[i])
        b.CopyFrom(nodes[j])
        nodes[i].CopyFrom(b)
        nodes[j].CopyFrom(a)
    elif kind == "drop_init" and len(inits):
        del inits[draw(st.integers(0, len(inits) - 1))]
    elif kind == "opset":
        m.opset_import[0].version = draw(st.sampled_from([1, 6, 7, 9, 10, 11, 12, 13, 18, 21, 99]))
    elif kind == "ir":
        m.ir_version = draw(st.sampled_from([0, 1, 3, 4, 7, 10, 11, 99]))


MUTATORS = [_dims, _input_dims, _attr, _op, _rename, _data, _structure]


@st.composite
def field_mutants(draw: st.DrawFn) -> bytes:
    model = onnx.load_model_from_string(SEEDS[draw(MODELS)])
    for _ in range(draw(st.integers(1, 3))):
        draw(st.sampled_from(MUTATORS))(draw, model)
    return model.SerializeToString()


# -- the tests -----------------------------------------------------------------------------------
def test_seeds_compile(tmp_path: Path) -> None:
    assert [compile_bytes(seed, tmp_path) for seed in SEEDS] == ["ok"] * len(SEEDS)


@run_settings(800)
@given(data=byte_mutants())
def test_fuzz_bytes(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    compile_bytes(data, tmp_path_factory.getbasetemp())


@run_settings(1200)
@given(data=field_mutants())
def test_fuzz_fields(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    compile_bytes(data, tmp_path_factory.getbasetemp())


@pytest.mark.slow
@run_settings(6000)
@given(data=st.one_of(byte_mutants(), field_mutants()))
def test_fuzz_long(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    compile_bytes(data, tmp_path_factory.getbasetemp())


# -- build files: validate trusts nothing ---------------------------------------------------------
@pytest.fixture(scope="module")
def seed_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray]:
    """A build of ``residual.onnx`` (every digital op kind of the seeds) and its emulator output
    on a fresh input (not one of validate's probes)."""
    from cimc.api import compile_model
    from cimc.emulator.run import Emulator

    out = tmp_path_factory.mktemp("seed") / "build"
    compile_model(HERE / "residual.onnx", out, CompileOptions())  # MatMul stays digital: it has constants
    x = (np.random.default_rng(7).standard_normal((1, 3, 8, 8)) * 3).astype(np.float32)
    return out, Emulator.open(out).run(x).outputs["y"]


def _mutate_json(draw: st.DrawFn, doc: Any) -> None:
    """Change one number, string or boolean somewhere inside ``doc``."""
    parent: Any = None
    key: Any = None
    node = doc
    for _ in range(12):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        parent, key = node, keys[draw(st.integers(0, len(keys) - 1))]
        node = parent[key]
        if not isinstance(node, (dict, list)):
            break
    if parent is None or isinstance(node, (dict, list)):
        return
    if isinstance(node, bool):
        parent[key] = not node
    elif isinstance(node, (int, float)):
        parent[key] = draw(st.sampled_from([node + 1, node - 1, -node, node * 2, 0, float(node) * 1.0001]))
    elif isinstance(node, str):
        parent[key] = draw(st.sampled_from(["Sigmoid", "Relu", "Identity", node + "x", ""]))


@run_settings(60)
@given(data=st.data())
def test_fuzz_build_files(data: st.DataObject, seed_build: tuple[Any, np.ndarray],
                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """Edit one value of ``graph.json``, ``quant.json`` or ``digital.safetensors`` and re-hash
    the manifest: ``cimc validate`` either reports a violation, or the emulator computes exactly
    what the untouched build does on a fresh input (the edit changed nothing it executes)."""
    import hashlib
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    from cimc.emulator.run import Emulator

    source, want = seed_build
    folder = tmp_path_factory.mktemp("tamper") / "build"
    shutil.copytree(source, folder)
    name = data.draw(st.sampled_from(["graph.json", "quant.json", "digital.safetensors"]))
    if name.endswith(".json"):
        doc = json.loads((folder / name).read_text())
        _mutate_json(data.draw, doc)
        (folder / name).write_text(json.dumps(doc))
    else:
        arrays = load_file(folder / name)
        key = data.draw(st.sampled_from(sorted(arrays)))
        flat = arrays[key].reshape(-1).copy()
        flat[data.draw(st.integers(0, flat.size - 1))] *= data.draw(st.sampled_from([-1.0, 2.0, 1.0001, 0.0]))
        arrays[key] = flat.reshape(arrays[key].shape)
        save_file(arrays, folder / name)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if validate_build(folder).ok:
        x = (np.random.default_rng(7).standard_normal((1, 3, 8, 8)) * 3).astype(np.float32)
        np.testing.assert_array_equal(Emulator.open(folder).run(x).outputs["y"], want)
