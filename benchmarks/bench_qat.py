"""QAT step cost: one phase-2 training step against one phase-1 step of the same model.

* ``qat/vgg9-phase2-step``: forward + backward + Adam step of the zoo's VGG9 (imported from
  ONNX into ``cimc.train``) in phase 2 — every conv computed as its wordline segments
  (``tile-wordlines``' bounds, 1–19 segments per layer on 256 wordlines) by one grouped
  convolution, each partial sum through the 5-bit ADC model — against the same step in
  phase 1 (LSQ weights and inputs, no segmentation), batch 64 of 32×32 CIFAR-sized images,
  same process. Target: ≤ 2×. Quick mode uses batch 8 at 16×16 (the model has no fixed
  spatial size below its global average pool).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.harness import Benchmark


@dataclass
class StepState:
    phase1: torch.nn.Module
    phase2: torch.nn.Module
    opt1: torch.optim.Optimizer
    opt2: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor


def _setup(batch: int, size: int) -> StepState:
    import cimc.models as models
    from cimc.frontend import import_onnx
    from cimc.train import module_from_graph, prepare_phase

    with tempfile.TemporaryDirectory(prefix="cimc-bench-qat-") as tmp:
        path = Path(tmp) / "vgg9.onnx"
        models.export_onnx("vgg9", path)
        graph = import_onnx(path)  # static 32×32; the module runs any batch and spatial size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    mods = []
    for phase in ("1", "2"):
        module = module_from_graph(graph)
        prepare_phase(module, phase, x)
        mods.append(module.train())
    opts = [torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-4) for m in mods]
    return StepState(mods[0], mods[1], opts[0], opts[1], x, y)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, state: StepState) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(state.x), state.y).backward()
    opt.step()


def benchmarks(quick: bool) -> list[Benchmark]:
    batch, size = (8, 16) if quick else (64, 32)
    return [Benchmark(
        name="qat/vgg9-phase2-step",
        setup=lambda: _setup(batch, size),
        run=lambda s: _step(s.phase2, s.opt2, s),
        reference=lambda s: _step(s.phase1, s.opt1, s),
        reference_name="phase-1 step (same model, batch, process)",
        target_ratio=2.0,
        rounds=None if quick else 5,
    )]
