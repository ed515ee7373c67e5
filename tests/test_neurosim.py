"""``cimc export-neurosim``: NeuroSim's ``NetWork.csv`` of a build — equal to NeuroSim's own
VGG8 file for the same network, and VGG9's rows from its plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from cimc.api import CompileOptions, compile_model
from cimc.build.reader import read_build
from cimc.cli.main import main
from cimc.passes.pipelines import MAPPING
from cimc.views.neurosim import network_csv, network_rows

#: DNN_NeuroSim V2.1 ``Training_pytorch/NeuroSIM/NetWork.csv`` (VGG8 on CIFAR-10), verbatim.
NEUROSIM_VGG8 = ("32,32,3,3,3,128,0,1\n32,32,128,3,3,128,1,1\n16,16,128,3,3,256,0,1\n16,16,256,3,3,256,1,1\n"
                 "8,8,256,3,3,512,0,1\n8,8,512,3,3,512,1,1\n1,1,8192,1,1,1024,0,1\n1,1,1024,1,1,10,0,1\n")
MAPPING_ONLY = CompileOptions(passes=("fold-batchnorm", *MAPPING), map_fc=True)


def _vgg8(path: Path) -> Path:
    """NeuroSim's VGG8: convs 128, 128, M, 256, 256, M, 512, 512, M (3×3, pad 1), FC 8192 → 1024 → 10."""
    rng = np.random.default_rng(0)
    nodes, inits, x, cin = [], [], "x", 3
    for i, item in enumerate([128, 128, "M", 256, 256, "M", 512, 512, "M"]):
        if item == "M":
            nodes.append(helper.make_node("MaxPool", [x], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"p{i}"
            continue
        w = (rng.standard_normal((item, cin, 3, 3)) * 0.05).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x, cin = f"r{i}", item
    nodes.append(helper.make_node("Flatten", [x], ["flat"]))
    for j, (k, m) in enumerate([(8192, 1024), (1024, 10)]):
        inits.append(numpy_helper.from_array((rng.standard_normal((k, m)) * 0.01).astype(np.float32), f"fc{j}"))
        nodes.append(helper.make_node("MatMul", ["flat" if j == 0 else "h0", f"fc{j}"], [f"h{j}"]))
    graph = helper.make_graph(nodes, "vgg8", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("h1", TensorProto.FLOAT, [1, 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_vgg8_equals_neurosims_own_file(tmp_path: Path) -> None:
    compile_model(_vgg8(tmp_path / "vgg8.onnx"), tmp_path / "b", MAPPING_ONLY)
    assert network_csv(read_build(tmp_path / "b")) == NEUROSIM_VGG8
    out = tmp_path / "NetWork.csv"
    result = CliRunner().invoke(main, ["export-neurosim", str(tmp_path / "b"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == NEUROSIM_VGG8
    again = CliRunner().invoke(main, ["export-neurosim", str(tmp_path / "b"), "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.output


@pytest.mark.torch
@pytest.mark.slow
def test_vgg9_rows_from_its_plan(tmp_path: Path) -> None:
    """cimc's VGG9 (plan 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, GAP, FC 512 → 10):
    IFM sizes halve after each M, pooling 1 on the conv before each M and on the last conv (GAP)."""
    compile_model("vgg9", tmp_path / "b", MAPPING_ONLY)
    rows = network_rows(read_build(tmp_path / "b"))
    assert rows == [(32, 32, 3, 3, 3, 64, 1, 1), (16, 16, 64, 3, 3, 128, 1, 1), (8, 8, 128, 3, 3, 256, 0, 1),
                    (8, 8, 256, 3, 3, 256, 1, 1), (4, 4, 256, 3, 3, 512, 0, 1), (4, 4, 512, 3, 3, 512, 1, 1),
                    (2, 2, 512, 3, 3, 512, 0, 1), (2, 2, 512, 3, 3, 512, 1, 1), (1, 1, 512, 1, 1, 10, 0, 1)]
    weights = sum(c * kh * kw * k for _, _, c, kh, kw, k, _, _ in rows[:8])
    assert weights == 9_217_728  # the zoo's VGG9 conv weights: NeuroSim maps the same matrices
