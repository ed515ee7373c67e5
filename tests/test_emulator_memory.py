"""The emulator frees a tensor after its last reader unless it records (``Emulator._values``):
a run without ``record`` holds the constants and the outputs only, a recording run every
tensor, and both give the same outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cimc.emulator import Emulator
from tests.cim_helpers import compile_ir, small_cnn, write

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


def test_a_run_without_record_keeps_only_constants_and_outputs(tmp_path: Path) -> None:
    graph, ctx = compile_ir(small_cnn(batch=2))
    emu = Emulator.open(write(graph, ctx, tmp_path / "b"))
    feeds = emu.feeds(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    outputs = {t.name for t in emu.files.graph.outputs}
    computed = {t for node, _ in emu.nodes for t in node.outputs}
    assert len(computed - outputs) >= 5  # intermediates to free

    lean, _ = emu._values(dict(feeds), False)
    assert set(lean) == set(emu.constants) | outputs
    full, traces = emu._values(dict(feeds), True)
    assert computed | set(feeds) <= set(full) and len(traces) == len(emu.layers)
    for name in outputs:
        np.testing.assert_array_equal(lean[name], full[name])
