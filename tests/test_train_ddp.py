"""DDP on CPU processes (gloo).

* The default trainer in two processes ends with identical weights and step sizes, although
  rank 1 starts from perturbed step sizes (DDP broadcasts rank 0's state when it wraps the
  module; calibration happens before, outside DDP).
* BatchNorm under DDP normalises with the global batch's statistics (outputs, running
  statistics and gradients of the whole batch).
* ``torchrun --nproc_per_node=2`` on the real ``cimc qat`` CLI: identical final weights on both
  ranks (a per-rank state digest), the same accuracies on both, one table printed, one output
  file, equal to the single-process run with the same (global) batch; a run killed after
  epoch 1 resumes from its checkpoint in one process and ends where the uninterrupted run does.

Tolerance of "equal": 1e-5 of each tensor's largest magnitude (and 1e-5 relative on every step
size). The two runs take the same steps on the same samples, but float32 sums are taken in
another order (DDP all-reduces the two ranks' gradients; each rank sums half a batch), so they
agree to float rounding, not bit for bit: at most 1.5e-7 measured (weights; the step sizes were
equal bit for bit). The float phase is left out on purpose: the conv biases in front of
BatchNorm have a true gradient of 0, so Adam (normalising) steps them by up to ±lr on pure
rounding noise, in one process as in two, and phase 2 at lr 1e-2 amplifies any difference:
``--float-epochs 1 --epochs 1`` on 1 and 2 processes ended 0.3 points apart in accuracy
(86.67% vs 86.94%) with weights up to 30% apart. BatchNorm's synchronisation itself is checked
directly (``test_synced_batchnorm_is_the_global_batch_norm``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from cimc.cli.main import main
from cimc.data import load_dataset
from cimc.frontend import import_onnx
from cimc.train import TrainData, fit, module_from_graph, prepare_phase
from cimc.train.checkpoint import read_meta
from cimc.train.export import QUANT_KEY, parse_quant_metadata
from cimc.train.sync_bn import synced_batch_norm

pytestmark = pytest.mark.torch  # the zoo or the training hook


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    graph = import_onnx(Path(folder) / "model.onnx")
    data = TrainData(load_dataset("digits", "train").take(128), load_dataset("digits", "test").take(32), 16)
    module = module_from_graph(graph, nonnegative_inputs=frozenset(graph.inputs))
    prepare_phase(module, "1", data.calibration_batch(64))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, f"{folder}/start{rank}.safetensors")
    if rank == 1:
        with torch.no_grad():
            for layer in module.cim_layers().values():
                layer.w.log_step.add_(0.5)
    metrics = fit(module, data, "1", epochs=1, lr=1e-3, progress=False)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, f"{folder}/rank{rank}.safetensors")
    (Path(folder) / f"acc{rank}").write_text(repr(metrics["test_acc"]))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_agree(tmp_path: Path) -> None:
    import cimc.models as models

    models.export_onnx("digits_cnn", tmp_path / "model.onnx")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    start = load_file(str(tmp_path / "start0.safetensors"))
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    steps = [k for k in ranks[0] if k.endswith("log_step") and ".w." in k]
    assert len(steps) == 3 and all(not torch.equal(ranks[0][k], start[k]) for k in steps)
    assert (tmp_path / "acc0").read_text() == (tmp_path / "acc1").read_text()


def _bn_worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(15, 4, 5, 5, generator=gen) * 3 + 1  # 15 rows: rank 0 gets 8, rank 1 gets 7
    gamma, beta = torch.rand(4, generator=gen).requires_grad_(), torch.rand(4, generator=gen).requires_grad_()
    mean, var = torch.zeros(4), torch.ones(4)
    part = x[rank::2].clone().requires_grad_()
    weight = torch.arange(1.0, 5.0).reshape(1, 4, 1, 1)
    out = synced_batch_norm(part, mean, var, gamma, beta, 0.1, 1e-5)
    (weight * out).pow(2).sum().backward()
    grads = [gamma.grad, beta.grad]
    for g in grads:
        dist.all_reduce(g)  # what DDP does (and then divides by the world size)
    save_file({"out": out.detach(), "mean": mean, "var": var, "dx": part.grad, "dgamma": grads[0],
               "dbeta": grads[1]}, f"{folder}/bn{rank}.safetensors")
    dist.destroy_process_group()


@pytest.mark.slow
def test_synced_batchnorm_is_the_global_batch_norm(tmp_path: Path) -> None:
    mp.spawn(_bn_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(15, 4, 5, 5, generator=gen) * 3 + 1).requires_grad_()
    gamma, beta = torch.rand(4, generator=gen).requires_grad_(), torch.rand(4, generator=gen).requires_grad_()
    mean, var = torch.zeros(4), torch.ones(4)
    out = F.batch_norm(x, mean, var, gamma, beta, True, 0.1, 1e-5)
    (torch.arange(1.0, 5.0).reshape(1, 4, 1, 1) * out).pow(2).sum().backward()
    assert x.grad is not None and gamma.grad is not None and beta.grad is not None
    for rank in range(2):
        got = load_file(str(tmp_path / f"bn{rank}.safetensors"))
        torch.testing.assert_close(got["out"], out.detach()[rank::2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got["dx"], x.grad[rank::2], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got["mean"], mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got["var"], var, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got["dgamma"], gamma.grad, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(got["dbeta"], beta.grad, rtol=1e-5, atol=1e-4)


class _Step:
    """A zero regularizer recording the step the trainer sets before each call."""

    def __init__(self) -> None:
        self.step, self.seen = -1, list[int]()

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        self.seen.append(self.step)
        return torch.zeros(())


def test_trainer_sets_the_global_step_also_after_resume(tmp_path: Path) -> None:
    graph = import_onnx(_zoo(tmp_path))
    data = TrainData(load_dataset("digits", "train").take(64), load_dataset("digits", "test").take(16), 32)
    module, ckpt = module_from_graph(graph), tmp_path / "ck.safetensors"
    first, second = _Step(), _Step()
    fit(module, data, "float", epochs=1, lr=1e-3, progress=False, checkpoint=ckpt, regularizer=first)
    fit(module, data, "float", epochs=3, lr=1e-3, progress=False, checkpoint=ckpt, regularizer=second)
    assert first.seen == [0, 1] and second.seen == [2, 3, 4, 5]
    assert read_meta(ckpt)["epoch"] == 3 and read_meta(ckpt)["world"] == 1


# -- torchrun on the CLI -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
QAT = ["qat", "digits_cnn", "--data", "digits", "--phase", "1", "--epochs", "2", "--batch-size", "64"]
TOL = 1e-5


def _zoo(folder: Path) -> Path:
    import cimc.models as models

    path = folder / "digits_cnn.onnx"
    if not path.exists():
        models.export_onnx("digits_cnn", path)
    return path


def torchrun(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=2 -m cimc.cli.main ARGS`` (torchrun's module, run by
    this interpreter: the ``torchrun`` script on PATH may belong to another Python)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    full_env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", **env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cimc.cli.main", *args]
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900, check=False)


def single(args: list[str]) -> dict[str, Any]:
    """The same CLI in this process, one thread (as each torchrun rank), ``--json``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, ["--json", *args])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.output.strip().splitlines()[-1])
    return report


def assert_same_model(got: Path, want: Path) -> None:
    """Every initializer within ``TOL`` of its largest magnitude, every step size within ``TOL``
    relative, every other quantization field equal."""
    a, b = import_onnx(got), import_onnx(want)
    assert sorted(a.initializers) == sorted(b.initializers)
    for name, value in b.initializers.items():
        scale = float(np.abs(value).max()) or 1.0
        np.testing.assert_allclose(a.initializers[name], value, rtol=0, atol=TOL * scale, err_msg=name)
    qa, qb = (parse_quant_metadata(g.metadata[QUANT_KEY]) for g in (a, b))
    assert sorted(qa) == sorted(qb)
    for layer, record in qb.items():
        assert sorted(qa[layer]) == sorted(record)
        for key, value in record.items():
            if isinstance(value, bool | str) or value is None:
                assert qa[layer][key] == value, (layer, key)
            else:
                np.testing.assert_allclose(qa[layer][key], value, rtol=TOL, err_msg=f"{layer} {key}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The single-process run: phase 1, 2 epochs, global batch 64."""
    out = tmp_path_factory.mktemp("single") / "single.onnx"
    return out, single([*QAT, "-o", str(out)])


@pytest.mark.slow
def test_torchrun_qat_is_the_single_process_run(reference: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out_dir, digests = tmp_path / "out", tmp_path / "digests"
    out_dir.mkdir()
    digests.mkdir()
    run = torchrun([*QAT, "-o", str(out_dir / "ddp.onnx")], tmp_path, CIMC_DDP_DIGEST=str(digests))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("test accuracy") == 1 and run.stdout.count("wrote ") == 1, run.stdout
    assert sorted(p.name for p in out_dir.iterdir()) == ["ddp.onnx"]  # one file, no temporary left
    ranks = [json.loads((digests / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # identical final weights and step sizes
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # the same figures on both ranks
    want, metrics = reference
    assert_same_model(out_dir / "ddp.onnx", want)
    got = ranks[0]["metrics"]["1"]
    assert got["test_acc"] == pytest.approx(metrics["metrics"]["1"]["test_acc"], abs=1 / 360)  # ≤ 1 of 360
    assert got["train_loss"] == pytest.approx(metrics["metrics"]["1"]["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_resume_under_another_world_size(reference: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """Two processes, killed at the first step of epoch 2 (after epoch 1's checkpoint); one
    process resumes with the same global batch and ends where the uninterrupted run ends."""
    ckpt, out = tmp_path / "run.safetensors", tmp_path / "resumed.onnx"
    crashed = torchrun([*QAT, "--resume", str(ckpt), "--trainer", "tests.ddp_crash_trainer:fit", "-o", str(out)],
                       tmp_path)
    assert crashed.returncode != 0 and not out.exists()
    meta = read_meta(ckpt)
    assert (meta["phase"], meta["epoch"], meta["epochs"], meta["world"]) == ("1", 1, 2, 2)
    report = single([*QAT, "--resume", str(ckpt), "-o", str(out)])
    assert sorted(report["metrics"]) == ["1"] and read_meta(ckpt)["world"] == 1
    assert_same_model(out, reference[0])
