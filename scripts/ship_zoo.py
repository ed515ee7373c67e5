"""Rewrite the ONNX files the small zoo models ship with (``cimc/models/shipped``).

* ``tiny_cnn``, ``tiny_residual``: exported afresh with torch from their definitions (seed 0);
  they have no dataset, so they ship untrained (``tests/test_zoo.py`` checks that the shipped
  files equal a fresh export).
* ``digits_cnn`` (``models.TRAINED``): trained first on the train split of scikit-learn's digits
  (1,437 images; ``cimc.data.builtin``) by ``train_digits_cnn`` — a deterministic recipe of a few
  seconds on one CPU core — then exported the same way, so ``cimc compile digits_cnn --eval digits``
  reports a real float accuracy (``tests/test_zoo.py`` checks the accuracy of the shipped file,
  and, marked slow, that this recipe reproduces its bytes on the same torch build).

Training in float32 is reproducible bit for bit only with the same kernels: torch, oneDNN and
MKL each pick their code by the CPU's instruction set (an AVX-512 machine trains another
``digits_cnn`` than an AVX2 one, weights apart by up to 0.05). The script therefore runs under
``PINNED_ISA`` (AVX2 everywhere; it re-executes itself with those variables, which must be set
before torch is imported), the kernels the shipped file was trained with.

    python3 scripts/ship_zoo.py
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import cimc.models as models
from cimc.data.builtin import load_builtin
from cimc.models import export, registry

#: The instruction set of every kernel library torch uses, pinned (module doc): torch's own
#: kernels, oneDNN's (both names it reads), MKL's dispatch and its reproducible-results mode.
PINNED_ISA = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
              "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AVX2"}

#: The digits_cnn recipe: Adam, cosine learning rate from LR to 0, EPOCHS epochs of BATCH images.
SEED, EPOCHS, BATCH, LR = 0, 30, 64, 1e-2


def train_digits_cnn(seed: int = SEED, epochs: int = EPOCHS) -> torch.nn.Module:
    """``digits_cnn`` trained on the digits train split; in eval mode.

    Deterministic for a torch build: torch's default initialisation under ``manual_seed(seed)``,
    batch order ``numpy.random.default_rng([seed, epoch]).permutation``, one thread and
    ``torch.use_deterministic_algorithms`` while it trains (the caller's settings are restored).
    Loss: cross-entropy; Adam at ``LR·½(1 + cos(π·step/steps))``.
    """
    data = load_builtin("digits", "train")
    x_all, y_all = torch.from_numpy(data.x), torch.from_numpy(data.y)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = registry.get("digits_cnn").load_builder()()
            optimizer = torch.optim.Adam(model.parameters(), lr=LR)
            steps, step = epochs * math.ceil(len(data) / BATCH), 0
            model.train()
            for epoch in range(epochs):
                order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(data)))
                for batch in order.split(BATCH):
                    for group in optimizer.param_groups:
                        group["lr"] = LR * 0.5 * (1.0 + math.cos(math.pi * step / steps))
                    optimizer.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x_all[batch]), y_all[batch]).backward()
                    optimizer.step()
                    step += 1
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return model.eval()


TRAINERS = {"digits_cnn": train_digits_cnn}


def ship(name: str, path: Path) -> None:
    """Write zoo model ``name`` to ``path``: trained when it is in ``models.TRAINED``."""
    if name not in models.TRAINED:
        models.export_onnx(name, path, fresh=True)
        return
    export.export_onnx(TRAINERS[name](), models.example_input(name, 0), path)


def pinned() -> bool:
    """Whether this process runs under ``PINNED_ISA``."""
    return all(os.environ.get(k) == v for k, v in PINNED_ISA.items())


def main() -> None:
    if not pinned():  # torch is imported already: only a new process takes the variables
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **PINNED_ISA})
    for name in models.SHIPPED:
        path = models.SHIPPED_DIR / f"{name}.onnx"
        ship(name, path)
        print(f"wrote {path.name}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
