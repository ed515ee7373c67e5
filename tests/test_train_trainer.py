"""The default trainer: it learns, it is deterministic, it resumes exactly; data wrapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cimc.data import load_dataset
from cimc.errors import UsageError
from cimc.macro import MacroSpec
from cimc.train import TrainData, fit, load_train_data, module_from_graph, prepare_phase
from cimc.train.checkpoint import load_checkpoint, read_meta
from cimc.train.config import QuantConfig
from cimc.train.datasets import crop_flip
from cimc.train.finetune import FinetuneOptions, finetune_module
from cimc.train.module import IRModule
from cimc.train.progress import EpochBar
from cimc.train.trainer import cosine_factor, train_steps
from tests.test_data import write_cifar
from tests.train_helpers import zoo_graph

pytestmark = pytest.mark.torch  # the zoo or the training hook


def digits(n_train: int = 256, n_test: int = 128, batch: int = 32) -> TrainData:
    return TrainData(load_dataset("digits", "train").take(n_train), load_dataset("digits", "test").take(n_test), batch)


def fresh(phase: str = "float") -> IRModule:
    graph = zoo_graph("digits_cnn")
    module = module_from_graph(graph, nonnegative_inputs=frozenset(graph.inputs))
    if phase != "float":
        prepare_phase(module, phase, digits().calibration_batch(64))
    return module


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_fit_learns_and_is_deterministic() -> None:
    data = digits()
    a, b = fresh(), fresh()
    before = state(a)
    metrics = fit(a, data, "float", epochs=3, lr=1e-2, progress=False, seed=1)
    fit(b, data, "float", epochs=3, lr=1e-2, progress=False, seed=1)
    assert metrics["test_acc"] > 0.3 and metrics["train_loss"] < 1.2  # chance: 0.1 and ln 10 ≈ 2.3
    after_a, after_b = state(a), state(b)
    assert all(torch.equal(after_a[k], after_b[k]) for k in after_a)
    assert not all(torch.equal(before[k], after_a[k]) for k in before)


class Crash(Exception):
    pass


def test_resume_after_interruption_is_exact(tmp_path: Path) -> None:
    data = digits(128, 32, batch=32)
    steps = data.steps_per_epoch()
    reference = fresh("1")
    fit(reference, data, "1", epochs=2, lr=1e-3, progress=False)
    calls = {"n": 0}

    def crash_in_second_epoch(model: torch.nn.Module) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > steps:
            raise Crash
        return torch.zeros(())

    ckpt = tmp_path / "run.safetensors"
    with pytest.raises(Crash):
        fit(fresh("1"), data, "1", epochs=2, lr=1e-3, regularizer=crash_in_second_epoch, progress=False,
            checkpoint=ckpt)
    assert read_meta(ckpt)["epoch"] == 1
    resumed = fresh("1")
    fit(resumed, data, "1", epochs=2, lr=1e-3, progress=False, checkpoint=ckpt)
    want, got = state(reference), state(resumed)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert read_meta(ckpt)["epoch"] == 2 and any(k.startswith("optim.") for k in load_file(str(ckpt)))


def test_checkpoint_refuses_other_phase_and_other_files(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.safetensors"
    module = fresh("1")
    fit(module, digits(64, 32), "1", epochs=1, lr=1e-3, progress=False, checkpoint=ckpt)
    with pytest.raises(UsageError, match="phase 1, not 2"):
        load_checkpoint(ckpt, module, None, "2")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError):
        read_meta(tmp_path / "junk.safetensors")
    other = fresh("1")  # another model: one more parameter
    other.register_parameter("extra", torch.nn.Parameter(torch.zeros(1)))
    with pytest.raises(UsageError, match="does not fit this model"):  # was a RuntimeError: "internal error"
        load_checkpoint(ckpt, other, None, "1")


def test_regularizer_is_added_to_the_loss() -> None:
    data = digits(64, 32)
    l1 = {}
    for weight in (0.0, 10.0):
        module = fresh()
        gammas = module.bn_gammas()
        fit(module, data, "shrink", epochs=4, lr=5e-2, progress=False,
            regularizer=lambda m, g=gammas, w=weight: w * sum(v.abs().sum() for v in g.values()))
        l1[weight] = sum(v.detach().abs().sum().item() for v in gammas.values())
    assert l1[10.0] < 0.9 * l1[0.0]  # Adam moves each γ by ≈ lr per step towards 0


def test_batches_shuffle_by_seed_and_shard_by_rank() -> None:
    """``batch_size`` is the global batch: rank r takes rows r::world of each, every rank the same
    number of steps, the union of a step's shares is the single-process batch."""
    data = digits(100, 10, batch=16)
    order = np.random.default_rng([7, 3]).permutation(100)
    shares = [list(data.batches(epoch=3, seed=7, rank=r, world=3)) for r in range(3)]
    assert [len(s) for s in shares] == [7, 7, 7] and data.steps_per_epoch(3) == data.steps_per_epoch() == 7
    for step in range(7):
        whole = order[16 * step:16 * step + 16]
        assert data.batch_total(step) == len(whole)
        for r in range(3):
            assert np.array_equal(shares[r][step][1].numpy(), data.train.y[whole[r::3]])
    again = np.concatenate([y.numpy() for _, y in data.batches(epoch=3, seed=7)])
    other = np.concatenate([y.numpy() for _, y in data.batches(epoch=4, seed=7)])
    assert np.array_equal(again, data.train.y[order])
    assert not np.array_equal(again, other)
    short = digits(97, 10, batch=16)  # the last batch (1 sample) cannot be shared by 3 ranks: dropped
    assert short.steps_per_epoch(3) == 6 and short.steps_per_epoch() == 7
    assert all(len(list(short.batches(rank=r, world=3))) == 6 for r in range(3))
    with pytest.raises(UsageError, match="cannot be shared by 32"):
        next(short.batches(world=32))


def test_augmentation_of_a_share_is_the_whole_batch_rows() -> None:
    """A rank crops and flips its rows of a global batch as a single process crops the whole."""
    x = torch.arange(6 * 3 * 4 * 4, dtype=torch.float32).reshape(6, 3, 4, 4)
    whole = crop_flip(x, torch.Generator().manual_seed(5), pad=2)
    for r in range(2):
        part = crop_flip(x[r::2], torch.Generator().manual_seed(5), pad=2, total=6, share=slice(r, None, 2))
        assert torch.equal(part, whole[r::2])


def test_cifar_folder_with_augmentation(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    data = load_train_data("cifar10", root=tmp_path, batch_size=8)
    assert data.augment and len(data.train) == 30 and len(data.test) == 6
    x, y = next(data.batches(seed=0))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
    plain = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = crop_flip(plain, torch.Generator().manual_seed(0), pad=0)
    assert all(torch.equal(o, p) or torch.equal(o, p.flip(-1)) for o, p in zip(out, plain, strict=True))
    with pytest.raises(UsageError, match="CIFAR-10 not found"):
        load_train_data("cifar10", root=tmp_path / "missing")


def test_cosine_schedule_scales_to_any_length() -> None:
    assert cosine_factor(0, 10) == 1.0 and cosine_factor(5, 10) == pytest.approx(0.5)
    assert cosine_factor(10, 10) == pytest.approx(0.0) and cosine_factor(1, 2) == pytest.approx(0.5)


class _CountingData(TrainData):
    """Training data that fails the test after a few epochs (instead of looping for ever)."""

    def batches(self, split: str = "train", **kwargs: object):  # type: ignore[no-untyped-def,override]
        object.__setattr__(self, "epochs_drawn", getattr(self, "epochs_drawn", 0) + 1)
        assert self.epochs_drawn <= 3, "train_steps kept drawing epochs of an empty training set"
        return super().batches(split, **kwargs)  # type: ignore[arg-type]


def test_an_empty_training_set_is_refused() -> None:
    """``train_steps`` draws epochs until it has made ``steps`` steps: with no training sample
    it once looped for ever (and ``finetune`` failed on ``min()`` of an empty array first)."""
    full = digits(8, 8)
    module = fresh("1")
    with pytest.raises(UsageError, match="no training samples"):
        train_steps(module, _CountingData(full.train.take(0), full.test, 4), 5, lr=1e-3)
    with pytest.raises(UsageError, match="batch size"):
        TrainData(full.train, full.test, 0)


def test_progress_bar_names_the_epoch_of_the_last_step() -> None:
    """The last step of epoch 1 is shown as epoch 1 (it once read ``done // steps + 1`` = 2)."""
    bar = EpochBar("phase 1", 3, 4, enabled=False)
    epochs = []
    for _ in range(12):
        bar.advance(1.0)
        epochs.append(bar.epoch)
    assert epochs == [1] * 4 + [2] * 4 + [3] * 4
    resumed = EpochBar("phase 1", 3, 4, enabled=False)
    resumed.skip(2)
    resumed.advance(1.0)
    assert resumed.epoch == 3


@pytest.mark.parametrize("steps,phase1", [(10, -3), (-2, None)])
def test_finetune_refuses_negative_steps(steps: int, phase1: int | None) -> None:
    """A negative phase-1 count once gave phase 2 ``steps − phase1`` (more than all) steps."""
    graph = zoo_graph("digits_cnn")
    config = QuantConfig.for_macro(MacroSpec())
    with pytest.raises(UsageError, match="steps must be ≥ 0"):
        finetune_module(graph, config, digits(64, 16), steps, FinetuneOptions(phase1=phase1))


@pytest.mark.parametrize(("saved", "phases", "float_epochs"), [("2", "1", 0), ("1", "2", 0), ("float", "1", 0)])
def test_a_checkpoint_of_a_phase_not_trained_is_refused_not_overwritten(
        saved: str, phases: str, float_epochs: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--phase 1`` on a phase-2 checkpoint used to retrain phase 1 and overwrite the checkpoint."""
    from cimc.errors import UsageError
    from cimc.train import qat

    ckpt = tmp_path / "ckpt.safetensors"
    ckpt.write_bytes(b"x")
    monkeypatch.setattr(qat, "read_meta", lambda path: {"phase": saved})
    with pytest.raises(UsageError, match=f"holds phase {saved}"):
        qat._phase_plan(qat.QatOptions(phases=phases, float_epochs=float_epochs, checkpoint=ckpt))
    assert qat._phase_plan(qat.QatOptions(phases="both", float_epochs=1 if saved == "float" else 0,
                                          checkpoint=ckpt))[-1] == "2"
