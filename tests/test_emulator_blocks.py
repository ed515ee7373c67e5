"""The emulator's ADC and adder tree (``cimc.emulator.run.convert_and_add``) work on blocks of
output channels of about ``BLOCK_BYTES``: the block size changes no code, sum or output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cimc.emulator.run as emulator_run
from cimc.emulator import Emulator
from tests.cim_helpers import compile_ir, small_cnn, write

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


def _traces(emu: Emulator, x: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    run = emu.run(x, record=True)
    return {k: (t.adc_codes, t.sums, t.outputs) for k, t in run.traces.items()}


def test_adc_blocks_smaller_than_one_channel_give_the_same_codes(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``BLOCK_BYTES`` below one channel's partial sums: every block is a single output channel
    (``max(1, …)``), and the ADC codes, sums and outputs equal a run in one block."""
    graph, ctx = compile_ir(small_cnn(batch=2))
    emu = Emulator.open(write(graph, ctx, tmp_path / "b"))
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    monkeypatch.setattr(emulator_run, "BLOCK_BYTES", 1 << 40)
    whole = _traces(emu, x)
    monkeypatch.setattr(emulator_run, "BLOCK_BYTES", 4)
    blocked = _traces(emu, x)
    assert whole.keys() == blocked.keys() and whole
    for name, arrays in whole.items():
        for a, b in zip(arrays, blocked[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)

