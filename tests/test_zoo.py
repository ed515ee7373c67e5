"""Tests for the model zoo (``cimc.models``): structure, parameter counts and ONNX export."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import cimc.models as models
from cimc.models import available, build, describe, example_input, export_onnx, input_shape

pytestmark = pytest.mark.torch  # the zoo or the training hook

ALLOWED_OPS = frozenset(
    {
        "Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool",
        "Add", "Concat", "Flatten", "Reshape", "Gemm", "MatMul", "Pad", "Transpose",
        "Identity", "Constant", "Shape", "Gather", "Unsqueeze", "Slice",
    }
)  # fmt: skip

# name -> (number of convs, total conv weight parameters)
CONV_COUNTS: dict[str, tuple[int, int]] = {
    "vgg9": (8, 9_217_728),
    "vgg16": (13, 14_710_464),
    "resnet18": (17, 10_987_200),
}

# Op types each exported model is expected to use (BatchNormalization survives export:
# cimc folds it itself, and morphing needs its γ).
_BN = "BatchNormalization"
EXPECTED_OPS: dict[str, set[str]] = {
    "vgg9": {"Conv", _BN, "Relu", "MaxPool", "GlobalAveragePool", "Reshape", "Gemm"},
    "vgg16": {"Conv", _BN, "Relu", "MaxPool", "Reshape", "Gemm"},
    "resnet18": {"Conv", _BN, "Relu", "MaxPool", "Add", "Pad", "GlobalAveragePool", "Reshape", "Gemm", "Constant"},
    "tiny_cnn": {"Conv", _BN, "Relu", "MaxPool", "GlobalAveragePool", "Reshape", "Gemm"},
    "tiny_residual": {"Conv", _BN, "Relu", "Add", "Concat", "GlobalAveragePool", "Reshape", "Gemm"},
    "digits_cnn": {"Conv", _BN, "Relu", "MaxPool", "GlobalAveragePool", "Reshape", "Gemm"},
}

SLOW_EXPORTS = {"vgg16", "resnet18"}


def _convs(model: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def _export_params() -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_EXPORTS else name for name in sorted(EXPECTED_OPS)
    ]


def test_registry_metadata() -> None:
    assert available() == sorted(EXPECTED_OPS)
    for name in available():
        shape = input_shape(name)
        assert len(shape) == 4 and shape[0] == 1
        assert describe(name) and "\n" not in describe(name)
    with pytest.raises(KeyError):
        input_shape("no_such_model")


def test_import_does_not_load_torch() -> None:
    code = "import sys, cimc.models as m; m.available(); m.describe('vgg9'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(CONV_COUNTS))
def test_conv_parameter_counts(name: str) -> None:
    convs = _convs(build(name))
    n_convs, n_weights = CONV_COUNTS[name]
    assert len(convs) == n_convs
    assert sum(c.weight.numel() for c in convs) == n_weights
    assert all(c.bias is None for c in convs)


@pytest.mark.parametrize("name", available())
def test_forward_shape(name: str) -> None:
    model = build(name, seed=0)
    with torch.no_grad():
        assert tuple(model(example_input(name)).shape) == (1, 10)


def test_tiny_structure() -> None:
    tiny_convs = _convs(build("tiny_cnn"))
    assert [c.in_channels for c in tiny_convs] == [3, 8, 40]
    assert tiny_convs[-1].bias is not None
    groups = sorted(c.groups for c in _convs(build("tiny_residual")))
    assert groups == [1, 2, 8]
    digits = [(c.in_channels, c.out_channels) for c in _convs(build("digits_cnn"))]
    assert digits == [(1, 32), (32, 64), (64, 64)]


def test_seeded_build_is_deterministic_and_isolated() -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b = build("tiny_cnn", seed=5), build("tiny_cnn", seed=5)
    assert torch.equal(torch.rand(3), before)  # the global RNG was not consumed
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key
    bn = next(m for m in a.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.running_var is not None
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not a.training


@pytest.mark.parametrize("name", _export_params())
def test_export_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.onnx"
    export_onnx(name, path, seed=0, fresh=True)  # the definition (a shipped file may be trained)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no external data file

    proto = onnx.load(path)
    ops = {node.op_type for node in proto.graph.node}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    assert ops == EXPECTED_OPS[name], Counter(node.op_type for node in proto.graph.node)
    dims = [d for v in [*proto.graph.input, *proto.graph.output] for d in v.type.tensor_type.shape.dim]
    assert all(d.HasField("dim_value") for d in dims)  # static shapes

    x = example_input(name, 0)
    with torch.no_grad():
        expected = build(name, seed=0)(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    scale = float(np.abs(expected).max())
    assert scale > 1e-3
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)


def test_resnet_shortcut_is_parameter_free() -> None:
    model = build("resnet18", seed=0)
    block = model.stages[1][0]
    x = torch.randn(1, 64, 16, 16)
    out = block.shortcut(x)
    assert out.shape == (1, 128, 8, 8)
    assert torch.equal(out[:, :64], x[:, :, ::2, ::2])
    assert not out[:, 64:].any()


def test_export_is_byte_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    export_onnx("tiny_residual", first, seed=3)
    export_onnx("tiny_residual", second, seed=3)
    assert first.read_bytes() == second.read_bytes()
    export_onnx("tiny_residual", second, seed=4)
    assert first.read_bytes() != second.read_bytes()


@pytest.mark.parametrize("name", [n for n in models.SHIPPED if n not in models.TRAINED])
def test_shipped_files_equal_a_fresh_export(name: str, tmp_path: Path) -> None:
    """The ONNX files the small untrained models ship with are what their torch definitions export
    now (``python3 scripts/ship_zoo.py`` rewrites them), and the zoo hands them out as they are."""
    fresh, handed = tmp_path / "fresh.onnx", tmp_path / "handed.onnx"
    models.export_onnx(name, fresh, fresh=True)
    models.export_onnx(name, handed)
    shipped = models.shipped(name)
    assert shipped is not None and fresh.read_bytes() == shipped.read_bytes() == handed.read_bytes()


def _structure(proto: onnx.ModelProto) -> tuple[list[tuple[str, ...]], dict[str, tuple[int, ...]]]:
    nodes = [(n.op_type, *n.input, *n.output) for n in proto.graph.node]
    return nodes, {i.name: tuple(i.dims) for i in proto.graph.initializer}


@pytest.mark.parametrize("name", models.TRAINED)
def test_trained_shipped_model_is_its_definition_and_accurate(name: str, tmp_path: Path) -> None:
    """A trained shipped model has the graph of a fresh export of its definition (other weights),
    the zoo hands it out as it is, and it classifies the test split of its dataset (digits: 360
    images never trained on) far above chance (10%)."""
    from cimc.data import load_dataset

    fresh, handed = tmp_path / "fresh.onnx", tmp_path / "handed.onnx"
    models.export_onnx(name, fresh, fresh=True)
    models.export_onnx(name, handed)
    shipped = models.shipped(name)
    assert shipped is not None and handed.read_bytes() == shipped.read_bytes() != fresh.read_bytes()
    assert _structure(onnx.load(shipped)) == _structure(onnx.load(fresh))
    test = load_dataset("digits", "test")
    session = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[None]})[0] for x in test.x])
    assert (logits.argmax(axis=1) == test.y).mean() >= 0.97


@pytest.mark.slow
def test_trained_shipped_model_reproduces(tmp_path: Path) -> None:
    """``scripts/ship_zoo.py``'s recipe rebuilds the shipped digits_cnn byte for byte (same torch
    build: one thread, deterministic algorithms, fixed seed and batch order, and the kernels'
    instruction set pinned, ``PINNED_ISA``: a process of its own, as the script runs)."""
    from scripts.ship_zoo import PINNED_ISA

    code = ("import sys; from pathlib import Path; from scripts.ship_zoo import ship; "
            "ship('digits_cnn', Path(sys.argv[1]))")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "digits_cnn.onnx")], check=True, cwd=root,
                   env={**os.environ, **PINNED_ISA})
    shipped = models.shipped("digits_cnn")
    assert shipped is not None and (tmp_path / "digits_cnn.onnx").read_bytes() == shipped.read_bytes()
