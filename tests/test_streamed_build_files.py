"""Build files written as pieces (``cimc.build.file_parts``) instead of one ``bytes`` object:

* ``proto_splice.splice`` gives exactly the bytes ``onnx.save`` writes for the same model (a
  skeleton plus the large initializers' arrays), ``onnx.load`` reads it back equal, also with
  empty, non-contiguous, big-endian and interleaved tensors; a skeleton it cannot splice is an
  error, a model over protobuf's 2 GiB limit a ``ResourceLimitError`` before any array is read;
* ``cim_model_parts`` / ``float_model_bytes`` equal the serialized checked proto of the old path
  on a compiled graph with large digital weights and large CIM codes, and the pieces are the
  graph's own arrays (no copy);
* ``safetensors_parts`` equals ``safetensors.numpy.save`` byte for byte (empty file, empty and
  scalar tensors, several dtypes, transposed arrays, names past 9999);
* ``write_build`` writes pieces as the file and hashes them like the bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from cimc.build.directory import write_build
from cimc.build.file_parts import FileParts, file_bytes
from cimc.build.proto_splice import MAX_PROTO_BYTES, splice, splice_pieces, varint
from cimc.build.weights_file import safetensors_parts
from cimc.documents.manifest import SCHEMA_VERSION, Manifest, Source
from cimc.errors import ResourceLimitError
from cimc.ir.graph import Graph
from cimc.lowering.model import (
    LEAN_CHECK_BYTES,
    cim_model,
    cim_model_bytes,
    cim_model_parts,
    float_model,
    float_model_bytes,
    serialize,
)
from tests.cim_helpers import SMALL, add_gemm, add_node, compile_ir
from tests.ir_builders import add_conv, add_unary, graph_with_input

META = {"format": "test"}


def _model(tensors: list[onnx.TensorProto]) -> onnx.ModelProto:
    """A valid model reading ``x``; ``tensors`` ride along as initializers (with a doc string and
    metadata after the graph, so bytes follow the spliced field at every level)."""
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], tensors, doc_string="d")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"k": "v"})
    return model


def _skeleton(model: onnx.ModelProto, held: list[int]) -> tuple[bytes, dict[int, np.ndarray]]:
    """``model`` serialized with the initializers ``held`` emptied, and their arrays."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    arrays = {}
    for i in held:
        arrays[i] = numpy_helper.to_array(model.graph.initializer[i])
        skeleton.graph.initializer[i].raw_data = b""
    return serialize(skeleton), arrays


def _saved(model: onnx.ModelProto, tmp_path: Path) -> bytes:
    path = tmp_path / "saved.onnx"
    onnx.save(model, path)
    return path.read_bytes()


def test_splice_gives_the_bytes_onnx_save_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = [numpy_helper.from_array(rng.standard_normal((300, 130)).astype(np.float32), "big"),
               numpy_helper.from_array(np.arange(5, dtype=np.int64), "small"),
               numpy_helper.from_array(rng.integers(-9, 9, (40, 50, 70)).astype(np.int8), "codes"),
               numpy_helper.from_array(rng.standard_normal(20000), "wide")]  # float64
    model = _model(tensors)
    skeleton, arrays = _skeleton(model, [0, 2, 3])
    parts = splice(skeleton, arrays)
    data = parts.to_bytes()
    assert parts.size == len(data) == model.ByteSize()
    assert data == _saved(model, tmp_path) == serialize(model)
    back = onnx.load_from_string(data)
    assert back == model
    for t in back.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(t), numpy_helper.to_array(
            next(u for u in model.graph.initializer if u.name == t.name)))


def test_splice_of_empty_non_contiguous_and_big_endian_arrays(tmp_path: Path) -> None:
    """An empty tensor spliced stays empty; a transposed or big-endian array is written as
    ``from_array`` writes it (C order, little endian); a length crossing a varint byte is right."""
    base = np.arange(127 * 3, dtype=np.float32).reshape(127, 3)
    cases = [np.zeros((0, 4), np.float32), base.T, base.astype(">f4"), np.ones(32, np.float32)]  # 128 B: 2-byte varint
    model = _model([numpy_helper.from_array(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")), f"t{i}")
                    for i, a in enumerate(cases)])
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    for t in skeleton.graph.initializer:
        t.raw_data = b""
    data = splice(serialize(skeleton), dict(enumerate(cases))).to_bytes()
    assert data == _saved(model, tmp_path)
    np.testing.assert_array_equal(numpy_helper.to_array(onnx.load_from_string(data).graph.initializer[1]), base.T)


def test_splice_without_arrays_is_the_skeleton() -> None:
    model = _model([numpy_helper.from_array(np.ones(3, np.float32), "w")])
    assert splice(serialize(model), {}).to_bytes() == serialize(model)


def test_a_skeleton_that_cannot_be_spliced_is_refused() -> None:
    model = _model([numpy_helper.from_array(np.ones(3, np.float32), "w")])
    full = serialize(model)
    with pytest.raises(ValueError, match="raw_data must be empty"):  # the data is still there
        splice(full, {0: np.ones(3, np.float32)})
    skeleton, arrays = _skeleton(model, [0])
    with pytest.raises(ValueError, match="no initializer 1"):
        splice(skeleton, {1: arrays[0]})
    with pytest.raises(ValueError):
        splice(skeleton[:-3], arrays)  # truncated
    with pytest.raises(ValueError, match="wire type"):
        splice(b"\x0b" + skeleton, arrays)  # a group tag (wire type 3)


def test_a_model_over_2_gib_is_a_resource_limit_before_any_array_is_read() -> None:
    """A 2 GiB broadcast view (nothing allocated) makes the file too long to be parsed back."""
    model = _model([numpy_helper.from_array(np.ones(3, np.float32), "w")])
    skeleton, _ = _skeleton(model, [0])
    huge = np.broadcast_to(np.float32(0), (MAX_PROTO_BYTES // 4 + 1,))
    with pytest.raises(ResourceLimitError, match="2 GiB"):
        splice(skeleton, {0: huge})

    def total(n: int) -> int:
        pieces = splice_pieces(skeleton, {0: np.broadcast_to(np.uint8(0), (n,))})
        return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in pieces)

    n = MAX_PROTO_BYTES - 1000
    n += MAX_PROTO_BYTES - 1 - total(n)  # the longest file protobuf can parse: accepted
    assert total(n) == MAX_PROTO_BYTES - 1
    with pytest.raises(ResourceLimitError):
        total(n + 1)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31 - 1, 2**40])
def test_varint_reads_back(value: int) -> None:
    field = onnx.TensorProto()
    field.raw_data = b"\0" * value if value < 1000 else b""
    if value < 1000:
        assert serialize(field) == b"\x4a" + varint(value) + b"\0" * value
    decoded = sum((b & 0x7F) << (7 * i) for i, b in enumerate(varint(value)))
    assert decoded == value and all(b & 0x80 for b in varint(value)[:-1]) and varint(value)[-1] < 0x80


# -- model.cim.onnx and the float model on a compiled graph ---------------------------------------
def _compiled() -> Graph:
    """A conv with 150 KiB of int8 codes (CIM) → GAP → flatten → a digital Gemm with a 256 KiB weight."""
    rng = np.random.default_rng(3)
    g = graph_with_input((1, 64, 6, 6))
    y = add_unary(g, "Relu", add_conv(g, "x", 256, 3, pad=1, rng=rng, name="c1"), "r1")
    y = add_node(g, "GlobalAveragePool", [y], (1, 256, 1, 1), "gap")
    y = add_node(g, "Flatten", [y], (1, 256), "fl", axis=1)
    g.outputs.append(add_gemm(g, y, 256, rng, "fc"))
    return compile_ir(g, SMALL, map_fc=False)[0]


def test_cim_model_parts_are_the_checked_models_bytes(tmp_path: Path) -> None:
    graph = _compiled()
    assert graph.initializers["fc.w"].nbytes >= LEAN_CHECK_BYTES
    model = cim_model(graph)
    assert sum(len(t.raw_data) >= LEAN_CHECK_BYTES for t in model.graph.initializer) >= 2  # codes and fc.w
    parts = cim_model_parts(graph)
    data = parts.to_bytes()
    assert data == serialize(model) == _saved(model, tmp_path) == cim_model_bytes(graph)
    assert onnx.load_from_string(data) == model
    weight = graph.initializers["fc.w"]
    assert any(isinstance(p, np.ndarray) and np.shares_memory(p, weight) for p in parts.pieces)  # not a copy


def test_float_model_bytes_are_the_checked_float_models(tmp_path: Path) -> None:
    graph = _compiled()
    assert float_model_bytes(graph) == _saved(float_model(graph), tmp_path)


# -- safetensors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.int16, np.int32])
def test_safetensors_parts_equal_the_library(dtype: type) -> None:
    rng = np.random.default_rng(1)
    arrays = {"b": (rng.standard_normal((3, 5)) * 50).astype(dtype).T, "a": np.zeros((0, 7), dtype),
              "scalar": np.array(3, dtype), "const_0010": np.arange(4, dtype=dtype),
              "const_0002": np.arange(6, dtype=dtype).reshape(2, 3), "ü": np.ones((2, 2), dtype)}
    for metadata in ({}, META):
        parts = safetensors_parts(arrays, metadata)
        assert parts.to_bytes() == save_safetensors({k: np.array(v, order="C") for k, v in arrays.items()},
                                                    metadata=metadata or None)
        back = load_safetensors(parts.to_bytes())
        assert all(np.array_equal(back[k], v) for k, v in arrays.items())


def test_safetensors_parts_of_no_arrays_and_many_names() -> None:
    assert safetensors_parts({}, META).to_bytes() == save_safetensors({}, metadata=META)
    many = {f"const_{i:04d}": np.full(2, i, np.float32) for i in range(10_002)}
    assert safetensors_parts(many, META).to_bytes() == save_safetensors(many, metadata=META)


def test_safetensors_parts_refuses_what_the_library_orders_otherwise() -> None:
    with pytest.raises(ValueError, match="one dtype"):
        safetensors_parts({"a": np.ones(2, np.float32), "b": np.ones(2, np.int8)}, META)
    with pytest.raises(ValueError, match="one dtype"):
        safetensors_parts({"a": np.ones(2, np.float64)}, META)
    with pytest.raises(ValueError, match="metadata"):
        safetensors_parts({"a": np.ones(2, np.float32)}, {"x": "1", "y": "2"})


def test_contiguous_arrays_are_pieces_without_a_copy() -> None:
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    parts = FileParts.of([b"head", weight, weight.T])
    assert np.shares_memory(parts.pieces[1], weight) and not np.shares_memory(parts.pieces[2], weight)
    assert parts.to_bytes() == b"head" + weight.tobytes() + weight.T.tobytes() and parts.size == 4 + 96
    assert file_bytes(parts) == parts.to_bytes() and file_bytes(b"x") == b"x"


# -- writing -----------------------------------------------------------------------------------------
def test_write_build_writes_and_hashes_pieces_as_the_file(tmp_path: Path) -> None:
    weight = np.random.default_rng(2).standard_normal((256, 300)).astype(np.float32)
    parts = safetensors_parts({"w": weight}, META)
    manifest = Manifest(schema_version=SCHEMA_VERSION, tool="cimc", tool_version="0", macro=SMALL.to_dict(),
                        bitline_budget=1, input=Source(kind="onnx", name="m.onnx", sha256="0" * 64), options={},
                        files={})
    write_build(tmp_path / "b", {"digital.safetensors": parts, "a.txt": b"a"}, manifest)
    data = (tmp_path / "b" / "digital.safetensors").read_bytes()
    assert data == parts.to_bytes() == save_safetensors({"w": weight}, metadata=META)
    files = json.loads((tmp_path / "b" / "manifest.json").read_text())["files"]
    assert files["digital.safetensors"] == hashlib.sha256(data).hexdigest() == parts.sha256()
    assert files["a.txt"] == hashlib.sha256(b"a").hexdigest()
