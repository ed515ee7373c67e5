"""Export of a QAT model: lossless ONNX (folded weights, every step size), and the numerical
contract run on the exported file reproduces the phase-2 torch forward bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cimc.errors import InvalidModelError
from cimc.frontend import import_onnx
from cimc.train import QuantConfig, module_from_graph, prepare_phase
from cimc.train.export import QUANT_KEY, export_onnx, parse_quant_metadata
from tests.train_helpers import contract_run, trained_module, zoo_graph

pytestmark = pytest.mark.torch  # the zoo or the training hook


def test_export_is_lossless(tmp_path: Path) -> None:
    module = trained_module("digits_cnn", QuantConfig(granularity="column"))
    path = tmp_path / "q.onnx"
    export_onnx(module, path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    graph = import_onnx(path)
    assert not any(n.op == "BatchNormalization" for n in graph.nodes)
    quant = parse_quant_metadata(graph.metadata[QUANT_KEY])
    assert json.loads(props[QUANT_KEY])["version"] == 1 and sorted(quant) == sorted(module.cim_layers())
    for name, layer in module.cim_layers().items():
        w, b = module.effective_weights(name, fold=True)
        node = graph.node(name)
        assert np.array_equal(graph.initializers[node.inputs[1]], w.detach().numpy())
        assert b is not None and np.array_equal(graph.initializers[node.inputs[2]], b.detach().numpy())
        rec = quant[name]
        assert np.array_equal(rec["w_step"], layer.w.effective_step().detach().numpy())
        assert np.array_equal(rec["adc_step"], layer.adc.effective_step().detach().numpy())
        assert rec["a_step"] == np.float32(layer.a.effective_step().item()) and rec["a_signed"] is False
        assert rec["w_step"].shape == (w.shape[0],) and (rec["w_bits"], rec["a_bits"], rec["adc_bits"]) == (4, 4, 5)


@pytest.mark.parametrize("name,config", [
    ("digits_cnn", QuantConfig()),
    ("digits_cnn", QuantConfig(granularity="column", map_fc=True, wordlines=64)),
    ("tiny_residual", QuantConfig(tiling="dense", wordlines=20)),
])
def test_contract_reproduces_phase2_exactly(name: str, config: QuantConfig, tmp_path: Path) -> None:
    module = trained_module(name, config)
    export_onnx(module, tmp_path / "q.onnx")
    graph = import_onnx(tmp_path / "q.onnx")
    shape = graph.shape(graph.inputs[0])[1:]
    x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = module.run(x)
    ref = contract_run(graph, {graph.inputs[0]: x.numpy()}, config.wordlines, config.tiling)
    cim_outputs = [graph.node(n).outputs[0] for n in parse_quant_metadata(graph.metadata[QUANT_KEY])]
    assert len(cim_outputs) == len(module.cim_layers())
    for tensor in cim_outputs:
        assert np.array_equal(ours[tensor].numpy(), ref[tensor]), tensor
    logits = ours[graph.outputs[0]].numpy()
    np.testing.assert_allclose(logits, ref[graph.outputs[0]], rtol=1e-5, atol=1e-6)
    assert np.array_equal(logits.argmax(1), ref[graph.outputs[0]].argmax(1))


def test_export_needs_calibrated_adc(tmp_path: Path) -> None:
    from cimc.errors import UsageError

    graph = zoo_graph("digits_cnn")
    module = module_from_graph(graph)
    prepare_phase(module, "1", torch.rand(8, 1, 8, 8))
    with pytest.raises(UsageError, match="calibrate phase 2"):
        export_onnx(module, tmp_path / "q.onnx")


@pytest.mark.parametrize("text,match", [
    ("{", "not valid JSON"), ("[1]", "version"), ('{"version": 1}', "'layers' object"),
    ('{"version": 1, "layers": {"c": 3}}', "expected an object"),
    ('{"version": 1, "layers": {"c": {"w_bits": 4}}}', "missing"),
    ('{"version": 1, "layers": {"c": {"w_bits": 4, "a_bits": 4, "adc_bits": 5, "w_step": [0.1, 0.2], '
     '"a_step": 0.1, "adc_step": [1.0, 2.0, 3.0]}}}', "expected 1 \\(per layer\\)"),
    ('{"version": 1, "layers": {"c": {"w_bits": 4, "a_bits": 4, "adc_bits": 5, "w_step": [-1], '
     '"a_step": 0.1, "adc_step": [1.0]}}}', "not a positive finite number")])
def test_parse_quant_metadata_refuses_bad_records_with_typed_errors(text: str, match: str) -> None:
    """The metadata is read from a model file: a malformed record is an ``InvalidModelError``
    naming the problem (it was a bare JSONDecodeError, AttributeError or KeyError)."""
    with pytest.raises(InvalidModelError, match=match):
        parse_quant_metadata(text)
