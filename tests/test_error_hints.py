"""Errors that help: an unsupported op is named with its nodes, its count and what to do
(``cimc.frontend.unsupported``); an ``--input-shape`` hint fills in what the model fixes and
never suggests 1 for a dim it does not (``cimc.frontend.shape_hints``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from cimc.cli.main import main
from cimc.errors import InvalidModelError, UnsupportedError
from cimc.frontend import import_onnx
from cimc.frontend.normalize import normalize
from cimc.frontend.unsupported import FAMILIES
from cimc.ops import op_table
from tests.onnx_builders import make_model, node

CORPUS = Path(__file__).parent / "corpus"
I64 = np.int64
W = np.zeros((8, 3, 3, 3), np.float32)


def _unsupported(model: onnx.ModelProto) -> UnsupportedError:
    with pytest.raises(UnsupportedError) as info:
        import_onnx(model)
    return info.value


# -- unsupported ops -------------------------------------------------------------------------------
def test_no_family_names_an_op_the_table_has() -> None:
    """A hint for an op cimc takes would never show (and would say "update cimc" in disguise)."""
    assert all(not (f.ops & set(op_table())) for f in FAMILIES), [f.ops & set(op_table()) for f in FAMILIES]


@pytest.mark.parametrize(("op", "hint"), [
    ("Loop", "control flow: export with static shapes"),
    ("LSTM", "a recurrent layer: cimc maps convolutional networks"),
    ("NonMaxSuppression", "detection post-processing: compile the network up to its raw outputs"),
    ("QLinearConv", "an integer-arithmetic quantized op: cimc imports QDQ models"),
    ("RandomNormalLike", "random or training-only op: export the model for inference"),
    ("Sin", "cimc has no kernel for it: cut the model before it with onnx.utils.extract_model"),
])
def test_each_family_gets_its_hint(op: str, hint: str) -> None:
    err = _unsupported(make_model([helper.make_node(op, ["x"], ["y"], name="the_node")], {"x": (1, 3, 4, 4)}, ["y"]))
    assert f"{op} (node 'the_node')" in err.message
    assert f"{op}: " in (err.hint or "") and hint in (err.hint or "")
    assert err.details["hints"][op] in (err.hint or "") and err.details["counts"] == {op: 1}


def test_many_nodes_are_counted_and_the_first_named() -> None:
    nodes = [node("Sin", ["x" if i == 0 else f"t{i - 1}"], [f"t{i}"], name=f"sin{i}") for i in range(10)]
    err = _unsupported(make_model([*nodes, node("Relu", ["t9"], ["y"])], {"x": (2,)}, ["y"]))
    assert "Sin (node 'sin0', also 'sin1', 'sin2' and 7 more; 10 nodes)" in err.message
    assert err.details["nodes"]["Sin"] == [f"sin{i}" for i in range(10)] and err.details["counts"]["Sin"] == 10


@pytest.mark.parametrize(("domain", "hint"), [
    ("com.microsoft", "an onnxruntime contrib op"),
    ("qonnx.custom_op.general", "a QONNX op other than the quantizers cimc imports"),
    ("finn.custom_op.general", "a QONNX op other than the quantizers cimc imports"),
    ("com.example", "a custom op of domain 'com.example': export the model with standard ONNX ops"),
])
def test_custom_domains_get_their_hint(domain: str, hint: str) -> None:
    op = "MultiThreshold"  # a FINN op; QONNX's Quant itself is imported (cimc.frontend.quantizers)
    model = make_model([helper.make_node(op, ["x"], ["y"], name="q", domain=domain)], {"x": (2,)}, ["y"])
    model.opset_import.append(helper.make_opsetid(domain, 1))
    err = _unsupported(model)
    assert f"{domain}::{op} (node 'q')" in err.message and hint in (err.hint or "")


def test_shape_arithmetic_on_a_runtime_tensor_is_explained() -> None:
    """NonZero of the input cannot be folded: the hint says why and what to do."""
    err = _unsupported(make_model([helper.make_node("NonZero", ["x"], ["y"], name="nz")], {"x": (4, 3)}, ["y"]))
    assert "NonZero (node 'nz')" in err.message
    assert "folds shape arithmetic only when its inputs are constant" in (err.hint or "")


def test_the_cli_prints_ops_nodes_and_hints(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compile", str(CORPUS / "unsupported_ops.onnx"), "-o", str(tmp_path / "b")])
    code, err = result.exit_code, result.stderr
    assert code == 4 and err.count("\n") == 1
    assert "Cos (node 'cos', also 'cos2'; 2 nodes)" in err and "Hardmax (node 'hardmax')" in err
    assert re.search(r"hint: Cos, Sin: cimc has no kernel for it.*; Hardmax: detection post-processing", err)


# -- --input-shape hints ---------------------------------------------------------------------------
def _shape_hint(model: onnx.ModelProto) -> str:
    """The hint of the error ``normalize`` (the import's step that fixes input shapes) raises."""
    with pytest.raises(InvalidModelError, match="symbolic or unknown dims") as info:
        normalize(model)
    return info.value.hint or ""


@pytest.mark.parametrize(("dims", "readers", "want"), [
    (("N", 3, 8, 8), "relu", "--input-shape x=1,3,8,8"),  # only the batch is free: 1
    (("N", "C", "height", "width"), "conv", "--input-shape x=1,3,height,width (height, width: give the size"),
    (("N", None, None, None), "conv", "--input-shape x=1,3,H,W (H, W: give the size the model expects"),
    (("N", 3, "224", "224"), "relu", "--input-shape x=1,3,224,224"),  # a dim name that is a number
    (("N", "F"), "gemm", "--input-shape x=1,10"),  # a Gemm's weight (transB) fixes the features
    (("N", 3, "h", "w"), "resize", "--input-shape x=1,3,64,48"),  # the model resizes to 64×48 anyway
])
def test_input_shape_hint_uses_the_model_and_never_1_for_spatial_dims(dims: tuple, readers: str, want: str) -> None:
    nodes = {"relu": [node("Relu", ["x"], ["y"])], "conv": [node("Conv", ["x", "w"], ["y"], group=1)],
             "gemm": [node("Gemm", ["x", "g"], ["y"], transB=1)],
             "resize": [node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")]}[readers]
    inits = {"w": W, "g": np.zeros((4, 10), np.float32), "sizes": np.array([1, 3, 64, 48], I64)}
    used = {k: v for k, v in inits.items() if any(k in n.input for n in nodes)}
    hint = _shape_hint(make_model(nodes, {"x": dims}, ["y"], used))
    assert want in hint
    suggested = re.search(r"--input-shape x=([^ ]+)", hint)
    assert suggested is not None and "1" not in suggested.group(1).split(",")[1:]


def test_import_gives_the_hint() -> None:
    with pytest.raises(InvalidModelError, match=r"hint: pass --input-shape x=1,3,H,W \(H, W: give"):
        import_onnx(make_model([node("Conv", ["x", "w"], ["y"])], {"x": ("N", 3, None, None)}, ["y"], {"w": W}))


def test_input_shape_hint_for_each_symbolic_input() -> None:
    model = make_model([node("Add", ["a", "b"], ["y"])], {"a": ("N", 3), "b": ("N", "k")}, ["y"])
    hint = _shape_hint(model)
    assert "--input-shape a=1,3" in hint and "--input-shape b=1,k (k: give the size" in hint
