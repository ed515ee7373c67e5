"""QAT with a weight pool (``cimc qat --weight-pool``; docs/weight-pool.md, 'QAT with pools'):
the straight-through index choice trains, and the torch forward, the exported ONNX run by the
numerical contract, and the compiled build (emulator, ``model.cim.onnx`` in onnxruntime, numpy
reference) agree bit for bit on every CIM layer; the build's pool is the trained one and its
indices the ones the forward chose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from cimc.api import CompileOptions, compile_model
from cimc.cli.main import main
from cimc.emulator.validate import validate_build
from cimc.errors import InvalidModelError, UsageError
from cimc.frontend import import_onnx
from cimc.ir.annotations import QuantParams, WeightPool, WordlineTiling
from cimc.quant import pool_metadata
from cimc.quant.cim_layer import code_matrix
from cimc.quant.weight_pool import PoolConfig, codes
from cimc.train import QuantConfig, module_from_graph, prepare_phase
from cimc.train.export import QUANT_KEY, export_onnx, parse_quant_metadata
from cimc.train.pool import pool_codes, vectors
from tests.cim_helpers import assert_three_way
from tests.train_helpers import contract_run, trained_module, zoo_graph

pytestmark = pytest.mark.torch  # the training hook

CONFIGS = {
    "binary": QuantConfig(weight_pool=16, pool_vector=8),
    "error-pruned-column": QuantConfig(weight_pool=32, pool_vector=12, pool_error_bits=1, pool_error_prune=0.3,
                                       granularity="column", map_fc=True),
}


def compile_options(config: QuantConfig) -> CompileOptions:
    return CompileOptions(no_shift=True, map_fc=config.map_fc, granularity=config.granularity,
                          weight_pool=config.weight_pool, pool_vector=config.pool_vector,
                          pool_error_bits=config.pool_error_bits, calib_size=8)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pooled_qat(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    config = CONFIGS[request.param]
    module = trained_module("digits_cnn", config)
    folder = tmp_path_factory.mktemp("poolqat")
    export_onnx(module, folder / "q.onnx")
    result = compile_model(folder / "q.onnx", folder / "build", compile_options(config))
    return config, module, folder, result


def test_torch_onnx_and_build_agree_bit_for_bit(pooled_qat) -> None:  # type: ignore[no-untyped-def]
    config, module, folder, result = pooled_qat
    graph = import_onnx(folder / "q.onnx")
    x = torch.rand(12, *graph.shape(graph.inputs[0])[1:], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = module.run(x)
    ref = contract_run(graph, {graph.inputs[0]: x.numpy()}, config.pool_vector, "dense")
    layers = parse_quant_metadata(graph.metadata[QUANT_KEY])
    assert sorted(layers) == sorted(module.cim_layers())
    for name in layers:
        tensor = graph.node(name).outputs[0]
        assert np.array_equal(ours[tensor].numpy(), ref[tensor]), f"contract {name}"
    run = assert_three_way(result.out_dir, result.graph, x.numpy())  # emulator == onnxruntime == reference
    assert sorted(run.traces) == sorted(module.cim_layers())
    for name, trace in run.traces.items():
        assert np.array_equal(trace.outputs, ours[graph.node(name).outputs[0]].numpy()), f"build {name}"
    assert validate_build(result.out_dir).ok


def test_build_holds_the_trained_pool_and_the_forward_codes(pooled_qat) -> None:  # type: ignore[no-untyped-def]
    config, module, _, result = pooled_qat
    trained = module.weight_pool.pool.numpy().astype(np.int8)
    for name, layer in module.cim_layers().items():
        node = result.graph.node(name)
        pool, q = node.ann[WeightPool], node.ann[QuantParams]
        assert pool.trained and np.array_equal(pool.pool, trained)
        assert q.source == "qat" and np.array_equal(q.w_step, layer.w.effective_step().detach().numpy())
        assert node.ann[WordlineTiling].mode == "dense" and node.ann[WordlineTiling].wordlines == config.pool_vector
        w = module.effective_weights(name, fold=True)[0]
        forward = layer.weight_codes(w)[0].detach().reshape(w.shape[0], -1).numpy()
        np.testing.assert_array_equal(code_matrix(result.graph, node), forward)
        rows = forward.shape[1]
        np.testing.assert_array_equal(codes(pool.pool, pool.index, pool.error, pool.multiplier, rows), forward)
        if config.pool_error_bits:
            assert pool.error is not None and np.any(np.all(pool.error == 0, axis=2))  # some vectors pruned


def test_index_choice_is_straight_through_and_follows_the_weights() -> None:
    config = PoolConfig(4, 3, 0)
    pool = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [-1, -1, 1, 1]])
    u = torch.tensor([[0.5, -0.2, 0.9, -0.7, 0.3, 0.3]], requires_grad=True)  # rows 4, 5: a short last vector
    q = pool_codes(u.detach(), pool, config, torch.ones(1))
    np.testing.assert_array_equal(q.numpy(), [[1, -1, 1, -1, 1, 1]])  # vector 0 → p_1, the short one → p_0
    moved = pool_codes(torch.tensor([[-0.5, -0.2, 0.9, 0.7, 0.3, 0.3]]), pool, config, torch.ones(1))
    np.testing.assert_array_equal(moved.numpy()[0, :4], [-1, -1, 1, 1])  # the weights moved: index 2
    assert vectors(u.detach(), 4).shape == (2, 1, 4)
    # the pool module's codes pass the gradient straight through (inside |u| ≤ 1) to the latent weights
    module = module_from_graph(zoo_graph("digits_cnn"), QuantConfig(weight_pool=8, pool_vector=8))
    prepare_phase(module, "1", torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    layer = next(iter(module.cim_layers().values()))
    w = module.effective_weights(layer.node, fold=True)[0]
    w_q, s_w = layer.weight_codes(w)
    (w_q * torch.arange(w_q.numel(), dtype=torch.float32).reshape(w_q.shape)).sum().backward()
    inside = (w / s_w.detach()).abs() <= 1
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert inside.any() and grads and any(g.abs().sum() > 0 for g in grads)
    assert layer.w.log_step.grad is not None and layer.w.log_step.grad.abs().sum() > 0  # α learns (LSQ)


def test_a_pool_trained_model_needs_its_pool_options(pooled_qat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, _, folder, _ = pooled_qat
    with pytest.raises(UsageError, match="trained with a weight pool"):
        compile_model(folder / "q.onnx", tmp_path / "a", CompileOptions(map_fc=config.map_fc, calib_size=8))
    other = CompileOptions(map_fc=config.map_fc, weight_pool=config.weight_pool * 2, pool_vector=config.pool_vector,
                           pool_error_bits=config.pool_error_bits, calib_size=8)
    with pytest.raises(UsageError, match=f"--weight-pool {config.weight_pool} --pool-vector"):
        compile_model(folder / "q.onnx", tmp_path / "b", other)


def _with_metadata(src: Path, dst: Path, key: str, value: str) -> Path:
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
    onnx.save(model, str(dst))
    return dst


def test_a_tampered_pool_or_weight_is_an_invalid_model(pooled_qat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, _, folder, _ = pooled_qat
    doc = json.loads({p.key: p.value for p in onnx.load(str(folder / "q.onnx")).metadata_props}[pool_metadata.KEY])
    doc["pool"] = ["-" * config.pool_vector] * len(doc["pool"])  # the layers' signs now match no vector
    path = _with_metadata(folder / "q.onnx", tmp_path / "p.onnx", pool_metadata.KEY, json.dumps(doc))
    with pytest.raises(InvalidModelError, match=r"match no vector of the trained pool|not a code of the trained pool"):
        compile_model(path, tmp_path / "b", compile_options(config))


@pytest.mark.parametrize(("text", "match"), [
    ('{"version": 2}', "version 2"),
    ('{"version": 1, "vector_length": 0, "error_bits": 0, "pool": []}', "vector_length"),
    ('{"version": 1, "vector_length": 2, "error_bits": 2, "pool": ["++"]}', "error_bits"),
    ('{"version": 1, "vector_length": 2, "error_bits": 0, "pool": []}', "list of 1 to"),
    ('{"version": 1, "vector_length": 2, "error_bits": 0, "pool": ["+x"]}', "string of 2"),
    ('{"version": 1, "vector_length": 2, "error_bits": 0, "pool": ["+++"]}', "string of 2"),
    ("[", "metadata"),
])
def test_pool_metadata_refuses_bad_documents(text: str, match: str) -> None:
    with pytest.raises(InvalidModelError, match=match):
        pool_metadata.parse(text)


def test_derive_reads_indices_and_errors_back_from_codes() -> None:
    rng = np.random.default_rng(4)
    pool = np.where(rng.standard_normal((6, 5)) > 0, 1, -1).astype(np.int8)
    pool[3] = pool[1]  # a duplicate: the first one is chosen, as argmax does
    trained = pool_metadata.parse(pool_metadata.write(pool, 1))
    assert np.array_equal(trained.pool, pool) and trained.multiplier == 2
    index = rng.integers(0, 6, (3, 4))
    index[index == 3] = 1
    error = np.where(rng.standard_normal((3, 4, 5)) > 0, 1, -1).astype(np.int8)
    error[1, 2] = 0  # pruned
    q = codes(pool, index, error, 2, 13)  # 13 rows: a last vector of 3
    got_index, got_error = pool_metadata.derive("l", trained, q)
    np.testing.assert_array_equal(codes(pool, got_index, got_error, 2, 13), q)
    np.testing.assert_array_equal(got_index[:2], index[:2])
    bad = q.copy()
    bad[0, 0] = 0
    with pytest.raises(InvalidModelError, match="not a code"):
        pool_metadata.derive("l", trained, bad)
    half = q.copy()
    half[0, 5:7] = 2 * np.sign(half[0, 5:7])  # half of a kept error vector pruned
    with pytest.raises(InvalidModelError, match="not a code"):
        pool_metadata.derive("l", trained, half)


@pytest.mark.slow
def test_cli_qat_with_a_weight_pool_compiles_bit_exactly(tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    args = ["--json", "qat", "digits_cnn", "-o", str(out), "--data", "digits", "--epochs", "0", "--batch-size",
            "256", "--weight-pool", "16", "--pool-vector", "9", "--pool-error-bits", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props[pool_metadata.KEY])["vector_length"] == 9
    assert all(r["w_bits"] == 3 for r in json.loads(props[QUANT_KEY])["layers"].values())
    build = tmp_path / "b"
    compiled = CliRunner().invoke(main, ["--json", "compile", str(out), "-o", str(build), "--weight-pool", "16",
                                         "--pool-vector", "9", "--pool-error-bits", "1", "--no-shift"])
    assert compiled.exit_code == 0, compiled.output
    assert CliRunner().invoke(main, ["validate", str(build)]).exit_code == 0


def test_pooled_weight_codes_are_those_of_the_weights_over_their_step() -> None:
    """A pooled layer's codes are the pool codes of ``u = W/α`` (module doc of
    ``cimc.train.pool``): with error terms ``e = sign(u − A·p)`` they depend on the scale of
    ``u``, so ``W·α`` would give others (the build agrees with either: export writes ``α·q``)."""
    config = QuantConfig(weight_pool=8, pool_vector=8, pool_error_bits=1)
    module = module_from_graph(zoo_graph("digits_cnn"), config)
    prepare_phase(module, "1", torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    layer = next(iter(module.cim_layers().values()))
    w = module.effective_weights(layer.node, fold=True)[0].detach()
    w_q, s_w = layer.weight_codes(w)
    pool = module.weight_pool
    expected = pool_codes((w / s_w.detach()).reshape(w.shape[0], -1), pool.pool, pool.config, s_w.detach())
    np.testing.assert_array_equal(w_q.detach().reshape(w.shape[0], -1).numpy(), expected.numpy())
