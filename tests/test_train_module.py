"""IR → torch module: every op matches the reference interpreter; parameters are the
initializers; values write back to the IR; BN folds in the QAT phases; signs of inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimc.frontend import import_onnx
from cimc.ir.graph import Graph
from cimc.ir.interpreter import run
from cimc.macro import MacroSpec
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import PassContext
from cimc.train import QuantConfig, module_from_graph, prepare_phase
from tests.onnx_builders import feeds_for, make_model, node, rand
from tests.test_interpreter import CASES
from tests.train_helpers import zoo_graph

pytestmark = pytest.mark.torch  # the zoo or the training hook


def torch_run(graph: Graph, feeds: dict[str, np.ndarray], **kwargs: object) -> np.ndarray:
    module = module_from_graph(graph, **kwargs).eval()  # type: ignore[arg-type]
    out = module(*(torch.from_numpy(feeds[name]) for name in graph.inputs))
    assert isinstance(out, torch.Tensor)
    return out.detach().numpy()


FC_CASES = [c for c in sorted(CASES) if c.startswith(("gemm", "matmul"))]


@pytest.mark.parametrize("case,map_fc", [(c, False) for c in sorted(CASES)] + [(c, True) for c in FC_CASES])
def test_every_op_matches_interpreter(case: str, map_fc: bool) -> None:
    model = CASES[case]()
    graph = import_onnx(model)
    feeds = feeds_for(model)
    want = run(graph, feeds)[graph.outputs[0]]
    got = torch_run(graph, feeds, config=QuantConfig(map_fc=map_fc))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_residual", "digits_cnn"])
def test_zoo_models_any_batch(name: str) -> None:
    graph = zoo_graph(name)
    shape = (3, *graph.shape(graph.inputs[0])[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = np.concatenate([run(graph, {graph.inputs[0]: x[i:i + 1]})[graph.outputs[0]] for i in range(3)])
    np.testing.assert_allclose(torch_run(graph, {graph.inputs[0]: x}), want, rtol=1e-4, atol=1e-5)


def test_parameters_are_the_initializers_and_write_back() -> None:
    graph = zoo_graph("tiny_cnn")
    module = module_from_graph(graph)
    stats = {t for n in graph.nodes if n.op == "BatchNormalization" for t in n.inputs[3:]}
    params = {id(p) for p in module.parameters() if p.requires_grad}
    assert params == {id(module.tensor(name)) for name in graph.initializers if name not in stats}
    gammas = module.bn_gammas()
    assert sorted(gammas) == sorted(n.name for n in graph.nodes if n.op == "BatchNormalization")
    bn = next(n for n in graph.nodes if n.op == "BatchNormalization")
    with torch.no_grad():
        gammas[bn.name].mul_(2.0)
    back = module.to_graph()
    assert np.array_equal(back.initializers[bn.inputs[1]], 2.0 * graph.initializers[bn.inputs[1]])
    x = np.random.default_rng(1).standard_normal(graph.shape(graph.inputs[0])).astype(np.float32)
    out = module.eval()(torch.from_numpy(x))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(run(back, {graph.inputs[0]: x})[graph.outputs[0]], out.detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_float_training_mode_uses_batch_statistics() -> None:
    graph = zoo_graph("digits_cnn")
    module = module_from_graph(graph).train()
    bn = next(n for n in graph.nodes if n.op == "BatchNormalization")
    before = module.tensor(bn.inputs[3]).clone()
    module(torch.rand(8, 1, 8, 8))
    assert not torch.equal(before, module.tensor(bn.inputs[3]))  # running mean updated
    module.set_phase_flags("1")
    frozen = module.tensor(bn.inputs[3]).clone()
    module(torch.rand(8, 1, 8, 8))
    assert torch.equal(frozen, module.tensor(bn.inputs[3]))  # QAT folds with running statistics


def test_fold_matches_fold_batchnorm_pass() -> None:
    graph = zoo_graph("tiny_cnn", seed=3)
    module = module_from_graph(graph)
    folded = FoldBatchNorm().run(graph, PassContext(macro=MacroSpec())).graph
    for name in module.cim_layers():
        w, b = module.effective_weights(name, fold=True)
        node = folded.node(name)
        np.testing.assert_allclose(w.detach().numpy(), folded.initializers[node.inputs[1]], rtol=1e-6, atol=1e-7)
        assert b is not None
        np.testing.assert_allclose(b.detach().numpy(), folded.initializers[node.inputs[2]], rtol=1e-5, atol=1e-6)


def test_phase_flags_and_signed_inputs() -> None:
    graph = zoo_graph("digits_cnn")
    calib = torch.rand(16, 1, 8, 8)
    module = module_from_graph(graph, QuantConfig(learn_adc_step=True), nonnegative_inputs=frozenset(graph.inputs))
    layers = list(module.cim_layers().values())
    assert [layer.a.signed for layer in layers] == [False, False, False]
    assert not any(layer.w.log_step.requires_grad for layer in layers)  # float phase: no steps train
    prepare_phase(module, "1", calib)
    assert all(layer.w.log_step.requires_grad and layer.a.log_step.requires_grad for layer in layers)
    assert not any(layer.adc.log_step.requires_grad for layer in layers)
    prepare_phase(module, "2", calib)
    assert not any(layer.w.log_step.requires_grad or layer.a.log_step.requires_grad for layer in layers)
    assert all(layer.adc.log_step.requires_grad for layer in layers)  # --learn-adc-step
    assert [layer.plan.segments for layer in layers] == [1, 2, 3]
    unknown = module_from_graph(graph)
    assert [layer.a.signed for layer in unknown.cim_layers().values()] == [True, False, False]


def test_per_column_steps_have_cout_entries() -> None:
    graph = zoo_graph("digits_cnn")
    module = module_from_graph(graph, QuantConfig(granularity="column"))
    # seeded: the global generator's state depends on the tests run before (alone, this draw once
    # gave every column of a layer the floor step 1)
    prepare_phase(module, "2", torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    for layer in module.cim_layers().values():
        cout = module.effective_weights(layer.node)[0].shape[0]
        assert layer.w.effective_step().shape == (cout,) and layer.adc.effective_step().shape == (cout,)
        assert len(set(layer.adc.effective_step().tolist())) > 1


def _conv_gemm_bn_graph() -> Graph:
    """Conv → Relu → Flatten → Gemm → BatchNormalization (γ, β, μ, σ² far from identity)."""
    rng = np.random.default_rng(5)
    inits = {"w": rand(4, 1, 3, 3, seed=1), "fc": rand(10, 64, seed=2), "fb": rand(10, seed=3),
             "g": rng.uniform(2.0, 3.0, 10).astype(np.float32), "be": rng.uniform(1.0, 2.0, 10).astype(np.float32),
             "mu": rng.uniform(-1.0, 1.0, 10).astype(np.float32), "var": rng.uniform(0.2, 0.5, 10).astype(np.float32)}
    nodes = [node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]), node("Relu", ["c"], ["r"], name="relu"),
             node("Flatten", ["r"], ["f"], name="flat"), node("Gemm", ["f", "fc", "fb"], ["z"], name="fc", transB=1),
             node("BatchNormalization", ["z", "g", "be", "mu", "var"], ["y"], name="bn", epsilon=1e-5)]
    return import_onnx(make_model(nodes, {"x": [2, 1, 4, 4]}, ["y"], inits))


def test_bn_after_a_gemm_that_is_not_a_cim_layer_is_kept_in_the_qat_phases() -> None:
    """Without ``map_fc`` the Gemm runs digitally, so nothing folds its BN: phases 1 and 2 must
    still apply that BN (with running statistics). It was once skipped as if folded."""
    graph = _conv_gemm_bn_graph()
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 4, 4)).astype(np.float32)
    module = module_from_graph(graph, QuantConfig(map_fc=False), nonnegative_inputs=frozenset(graph.inputs))
    assert list(module.cim_layers()) == ["conv"]
    prepare_phase(module, "2", torch.from_numpy(x))
    module.eval()
    for phase in ("1", "2"):
        module.set_phase_flags(phase)
        values = module.run(torch.from_numpy(x))
        z, y = values["z"].detach().numpy(), values["y"].detach().numpy()
        g, beta, mu, var = (graph.initializers[t] for t in ("g", "be", "mu", "var"))
        want = (z - mu) / np.sqrt(var + np.float32(1e-5)) * g + beta
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5, err_msg=phase)
