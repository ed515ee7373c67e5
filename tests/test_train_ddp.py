"""DDP: two CPU processes (gloo) run the default trainer unchanged and end with identical
weights and step sizes, although rank 1 starts from perturbed step sizes (DDP broadcasts
rank 0's state when it wraps the module; calibration happens before, outside DDP)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from cimc.data import load_dataset
from cimc.frontend import import_onnx
from cimc.train import TrainData, fit, module_from_graph, prepare_phase

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
