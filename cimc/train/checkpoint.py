"""Checkpoints in safetensors: model state, Adam state and progress, never pickle.

One file holds ``model.<state key>`` tensors (parameters and buffers, step sizes and their
``initialized`` flags included), ``optim.<param index>.<field>`` tensors (Adam's ``step``,
``exp_avg``, ``exp_avg_sq``) and, in the safetensors metadata, a JSON ``cimc`` record:
phase, completed epochs, total epochs, seed, global step and the optimizer's param-group
hyper-parameters. Loading uses ``safetensors.torch.load_file`` (no code can run) and checks
that the phase matches. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from cimc.errors import UsageError
from cimc.limits import BUILD_ARRAY_BYTES
from cimc.untrusted import check_regular, load_json

FORMAT = "cimc-checkpoint/1"


def _flat_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors = {f"optim.{index}.{field}": torch.as_tensor(value).detach().cpu().clone().contiguous()
               for index, fields in state["state"].items() for field, value in fields.items()}
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]) -> None:
    """Atomically write model + optimizer state and ``meta`` (JSON-serialisable) to ``path``."""
    tensors = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    optim, groups = _flat_optimizer(optimizer)
    tensors.update(optim)
    record = dict(meta, param_groups=groups)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "cimc": json.dumps(record, sort_keys=True)})
    os.replace(tmp, path)


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON record of a checkpoint (raises ``UsageError`` for other files)."""
    check_regular(path, limit=BUILD_ARRAY_BYTES)  # a FIFO never blocks the mmap below
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:
        raise UsageError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise UsageError(f"{path} is not a cimc checkpoint")
    record = load_json(meta.get("cimc", ""), f"checkpoint {path.name}")
    if not isinstance(record, dict):
        raise UsageError(f"{path} is not a cimc checkpoint")
    return record


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    phase: str) -> dict[str, Any]:
    """Restore ``model`` (and ``optimizer``) from ``path``; returns the JSON record."""
    meta = read_meta(path)
    if meta.get("phase") != phase:
        raise UsageError(f"checkpoint {path} is for phase {meta.get('phase')}, not {phase}")
    tensors = load_file(str(path))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:  # another model's checkpoint (other bits, granularity, morph) or a garbled record
        model.load_state_dict(state, strict=True)
        if optimizer is not None:
            optimizer.load_state_dict(_optimizer_state(tensors, meta["param_groups"]))
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise UsageError(f"checkpoint {path} does not fit this model and options: {str(exc).splitlines()[0][:200]}",
                         hint="resume with the options it was written with, or pass another --resume file") from exc
    return meta


def _optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, field = key.split(".", 2)
            state.setdefault(int(index), {})[field] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}
