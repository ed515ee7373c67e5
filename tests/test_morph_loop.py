"""The morphing loop through the trainer hook (a stand-in trainer), and the command lines
``cimc morph`` and ``cimc compile --morph``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from cimc.cli.main import main
from cimc.frontend import import_onnx
from cimc.macro import MacroSpec
from cimc.morph.channel_groups import analyze
from cimc.morph.loop import LoopOptions, morph_loop
from cimc.morph.planning import MorphOptions
from cimc.morph.structure import placed_cost
from cimc.train import load_train_data
from tests import morph_trainer
from tests.morph_builders import zoo

pytestmark = pytest.mark.torch  # the zoo or the training hook


def test_loop_shrinks_prunes_expands_and_finetunes_each_round() -> None:
    graph = zoo("digits_cnn")
    data = load_train_data("synthetic", input_shape=graph.shape("input"), synthetic_size=64)
    morph_trainer.CALLS.clear()
    seen: list[int] = []
    result = morph_loop(graph, data, MacroSpec(), 256, LoopOptions(rounds=2, shrink_epochs=3, finetune_epochs=2),
                        trainer=morph_trainer.fit, on_round=lambda r: seen.append(r.round))
    assert [c["phase"] for c in morph_trainer.CALLS] == ["shrink", "finetune", "shrink", "finetune"]
    assert [c["regularizer"] is not None for c in morph_trainer.CALLS] == [True, False, True, False]
    assert [c["epochs"] for c in morph_trainer.CALLS] == [3, 2, 3, 2]
    assert seen == [1, 2] and result.initial["bitlines"] == 352
    for r in result.rounds:
        assert r.pruned_bitlines < r.bitlines <= 256 and r.macros == 1
        assert r.accuracy == 0.75 and r.shrink_acc == 0.5 and r.ratio is not None and r.ratio > 1
    cost = placed_cost(result.graph, MacroSpec(), MorphOptions(), 256)
    assert cost.bitlines == result.rounds[-1].bitlines
    sizes = analyze(result.graph).group_size.tolist()
    assert sizes[0] == 1 and sizes[-1] == 10 and sum(sizes[1:-1]) < 160  # input and classes fixed, body pruned


def test_cimc_morph_writes_the_model_and_a_round_log(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    args = ["--json", "morph", "digits_cnn", "--bl", "256", "--data", "synthetic", "--rounds", "2", "--epochs", "1",
            "--trainer", "tests.morph_trainer:fit", "--quiet", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    assert all(r["bitlines"] <= 256 for r in doc["rounds"])
    graph = import_onnx(out)
    assert placed_cost(graph, MacroSpec(), MorphOptions(), 256).bitlines == doc["rounds"][-1]["bitlines"]
    assert any(n.op == "BatchNormalization" for n in graph.nodes)  # BN kept: the model can be morphed again


def test_cimc_morph_trains_with_the_default_trainer(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["morph", "digits_cnn", "--bl", "256", "--data", "synthetic", "--rounds", "1",
                                       "--epochs", "1", "--quiet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "round" in result.output and "accuracy" in result.output and out.is_file()


def test_compile_morph_fits_the_budget_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(main, ["--json", "compile", "vgg9", "--bl", "4096", "--morph", "--no-shift",
                                           "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    totals = json.loads(result.stdout)["totals"]
    assert totals["bitlines"] <= 4096 and totals["macro_usage"] >= 0.8812
    assert any("fine-tuning" in r.getMessage() for r in caplog.records)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["options"]["morph"]["search"] == 101


def test_compile_morph_keep_rule_and_missing_budget(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--json", "compile", "digits_cnn", "--bl", "256", "--morph-keep", "0.5",
                                       "--no-shift", "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["bitlines"] <= 256
    result = CliRunner().invoke(main, ["compile", "digits_cnn", "--morph", "-o", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--bl" in result.stderr


@pytest.mark.slow
def test_trained_loop_on_digits_fits_one_macro_and_keeps_accuracy() -> None:
    from cimc.train import fit, module_from_graph

    data = load_train_data("digits")
    module = module_from_graph(zoo("digits_cnn"))
    fit(module, data, "float", epochs=4, lr=1e-2, progress=False)
    result = morph_loop(module.to_graph(), data, MacroSpec(), 256,
                        LoopOptions(rounds=1, shrink_epochs=3, finetune_epochs=3, progress=False))
    assert result.initial["bitlines"] == 352 and result.initial["accuracy"] > 0.9
    last = result.rounds[-1]
    assert last.bitlines <= 256 and last.macros == 1
    assert last.pruned_bitlines < 352 and last.accuracy > result.initial["accuracy"] - 0.05


def test_lambda_ramp_reaches_its_target_on_every_torchrun_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun (WORLD_SIZE=4) the ranks share each global batch (``batches(rank, world)``:
    rows r::4 of every batch), so each rank takes every global step and calls the regularizer once
    per step: λ must reach its full value at 2/3 of those steps (once the ramp counted one rank's
    steps against all ranks' total, and ended at 0.39·λ)."""
    from cimc.morph.regularizer import lambda_at
    from cimc.train.ddp import world_size

    monkeypatch.setenv("WORLD_SIZE", "4")
    assert world_size() == 4
    seen: list[tuple[int, float, float]] = []

    def rank_fit(model, data, phase, *, epochs, lr, regularizer=None, progress=True, seed=0):  # type: ignore[no-untyped-def]
        if regularizer is not None:
            for epoch in range(epochs):
                for _ in data.batches("train", epoch=epoch, seed=seed, rank=1, world=4):
                    lam = lambda_at(regularizer.step, regularizer.total_steps, regularizer.lam, regularizer.ramp)
                    regularizer(model)
                    seen.append((regularizer.step, lam, regularizer.lam))
        return morph_trainer.fit(model, data, phase, epochs=epochs, lr=lr, regularizer=None, seed=seed)

    graph = zoo("digits_cnn")
    data = load_train_data("synthetic", input_shape=graph.shape("input"), synthetic_size=96)
    morph_loop(graph, data, MacroSpec(), 256, LoopOptions(rounds=1, shrink_epochs=3, finetune_epochs=1, lam=1e-3),
               trainer=rank_fit)
    steps, last, target = seen[-1]
    assert steps == 3 * len(list(data.batches("train", rank=1, world=4))) == 3 * data.steps_per_epoch(4)
    assert last == pytest.approx(target) and target == 1e-3
    reached = next(i for i, (_, lam, _) in enumerate(seen) if lam == pytest.approx(target))
    assert reached == pytest.approx(2 / 3 * steps, abs=1)
