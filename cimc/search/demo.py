"""A trained digits CNN in a few seconds, for examples, tests and the search evidence.

The zoo's ``digits_cnn`` (3×3 convs 1→32→64→64, BN, on scikit-learn's 8×8 digits) trained
in float with Adam (lr 1e-2, batch 64, seeded) on the fixed train split of ``cimc.data``,
then exported to ONNX (BN kept: the compiler folds it). About 99 % test accuracy after 15
epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def train_digits_onnx(path: str | Path, epochs: int = 15, seed: int = 0) -> Path:
    """Train ``digits_cnn`` for ``epochs`` epochs and write it to ``path``."""
    import torch

    from cimc.models.tiny import digits_cnn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 8×8 images: one thread is fastest
    try:
        torch.manual_seed(seed)
        return _train(digits_cnn(), epochs, seed, Path(path))
    finally:
        torch.set_num_threads(threads)


def _train(model: torch.nn.Module, epochs: int, seed: int, path: Path) -> Path:
    import torch

    from cimc.data import load_dataset
    from cimc.models.export import export_onnx

    train = load_dataset("digits", "train")
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    model.eval()
    export_onnx(model, torch.zeros(1, 1, 8, 8), path)
    return path
