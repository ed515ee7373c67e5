"""The emulator's lanes (``cimc.emulator.lanes``): a batch split over threads, one chunk per
lane, gives the bits of the unsplit run (outputs and traces; plain and bit-sliced layers, the
integer and the float product, batches that do not divide evenly), runs on several threads,
reuses each lane's scratch, and steps aside for a model that mixes its batch or while another
run holds the lanes."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cimc.emulator.lanes as lanes_module
import cimc.emulator.run as emulator_run
from cimc.emulator import Emulator
from cimc.emulator.lanes import Lanes, core_count, lane_feeds, lane_slices
from cimc.emulator.workspace import Workspace
from cimc.macro import MacroSpec
from cimc.passes.manager import PassContext, run_passes
from cimc.passes.quantize import LayerBits, Quantize
from tests.cim_helpers import SMALL, assert_same_run, cim_passes, small_cnn, write

#: The macro and the bits of each build: the integer product, bit-sliced 4-bit weights and
#: inputs on 2-bit cells and DACs, and 8-bit digits (pairs of products past int16: the float product).
BUILDS = {"plain": (SMALL, LayerBits()),
          "sliced": (MacroSpec(name="sliced", wordlines=32, bitlines=64, cell_bits=2, dac_bits=2, adcs=16, adc_bits=6,
                               load_cycles=32), LayerBits(w_bits=4, a_bits=4)),
          "float": (MacroSpec(name="wide", wordlines=32, bitlines=64, cell_bits=8, dac_bits=8, adcs=16, adc_bits=8,
                              load_cycles=32), LayerBits())}


@pytest.mark.parametrize(("samples", "lanes", "sizes"), [
    (8, 2, [4, 4]), (7, 2, [4, 3]), (5, 3, [2, 2, 1]), (2, 8, [1, 1]), (1, 2, [1]), (0, 2, [0]), (6, 1, [6])])
def test_lane_slices_cover_the_batch_in_order_the_larger_first(samples: int, lanes: int, sizes: list[int]) -> None:
    parts = lane_slices(samples, lanes)
    assert [p.stop - p.start for p in parts] == sizes
    assert [i for p in parts for i in range(p.start, p.stop)] == list(range(samples))


def test_an_emulator_has_a_lane_per_core_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    assert core_count() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2} if pid == 0 else {0})
    assert core_count() == 3  # this process's affinity, not another's
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert core_count() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "cannot tell"
    assert core_count() == 1


@pytest.mark.parametrize(("cores", "lanes", "threads"), [(2, 2, 1), (5, 5, 1), (8, 8, 1), (64, 8, 8), (12, 8, 1)])
def test_the_default_lanes_are_the_cores_at_most_eight_the_rest_threads(
        cores: int, lanes: int, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes_module, "core_count", lambda: cores)
    assert lanes_module.default_lanes() == lanes
    assert lanes_module.lane_threads(lanes) == threads
    assert lanes_module.lane_threads(1) == cores and lanes_module.lane_threads(0) == cores
    assert lanes_module.lane_threads(cores + 1) == 1  # more lanes than cores: still one thread each


@pytest.mark.torch
def test_an_emulator_takes_the_default_lanes_and_shares_the_cores(build: tuple[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes_module, "core_count", lambda: 6)
    assert Emulator.open(build[1]).lane_count == 6
    assert Emulator.open(build[1], lanes=0).lane_count == 1
    emu = Emulator.open(build[1], lanes=2)
    emu.run(_batch(2))
    assert emu._lanes is not None
    assert {g.session.get_session_options().intra_op_num_threads for g in emu._lanes.products} == {3}


def test_lane_feeds_split_the_batched_inputs_and_pass_the_others_whole() -> None:
    x, bias = np.arange(5 * 2, dtype=np.float32).reshape(5, 2), np.ones((1, 2), np.float32)
    chunks = lane_feeds({"x": x, "b": bias}, frozenset({"x"}), 2)
    assert [c["x"].tolist() for c in chunks] == [x[:3].tolist(), x[3:].tolist()]
    assert all(c["b"] is bias for c in chunks)
    # inputs that disagree on their sample count, one sample, or one lane: one chunk, untouched
    assert len(lane_feeds({"x": x, "y": x[:4]}, frozenset({"x", "y"}), 2)) == 1
    assert len(lane_feeds({"x": x[:1]}, frozenset({"x"}), 2)) == 1
    assert lane_feeds({"x": x}, frozenset({"x"}), 1)[0]["x"] is x
    assert len(lane_feeds({"x": x}, frozenset(), 2)) == 1


def test_a_failing_lane_raises_after_every_lane_has_finished() -> None:
    lanes = Lanes([], 3)
    finished: list[int] = []
    gate = threading.Event()

    def job(chunk: int, work: Workspace) -> int:
        if chunk == 1:
            gate.wait(5)
            raise RuntimeError("lane 1")
        if chunk == 2:
            gate.set()
        finished.append(chunk)
        return chunk * 10

    assert lanes.map(lambda c, w: c * 10, [0, 1, 2]) == [0, 10, 20]
    with pytest.raises(RuntimeError, match="lane 1"):
        lanes.map(job, [0, 1, 2])
    assert sorted(finished) == [0, 2]
    with pytest.raises(ValueError, match="4 chunks for 3 lanes"):
        lanes.map(job, [0, 1, 2, 3])


def test_an_error_of_the_first_lane_waits_for_the_others() -> None:
    """Lane 0 (the caller's thread) fails at once; the run does not return before lane 1 has
    finished (it would still be writing into its workspace)."""
    finished: list[int] = []

    def job(chunk: int, work: Workspace) -> None:
        if chunk == 0:
            raise RuntimeError("lane 0")
        time.sleep(0.2)
        finished.append(chunk)

    with pytest.raises(RuntimeError, match="lane 0"):
        Lanes([], 2).map(job, [0, 1])
    assert finished == [1]


@pytest.fixture(scope="module", params=["plain", "sliced", "float"])
def build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A small CNN (padded 3×3 layers, a grouped one, a fully connected one, per-column ADC
    steps) built three ways (``BUILDS``): the way and the build folder."""
    macro, bits = BUILDS[request.param]
    passes = [dataclasses.replace(p, default_bits=bits) if isinstance(p, Quantize) else p
              for p in cim_passes(granularity="column")]
    ctx = PassContext(macro=macro)
    compiled = run_passes(small_cnn(batch=2, group=2), passes, ctx)
    return request.param, write(compiled, ctx, tmp_path_factory.mktemp(request.param) / "b")


def computing_threads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The names of the threads that run ``Emulator._compute`` from now on (filled as they do)."""
    threads: set[str] = set()
    compute = Emulator._compute

    def spy(self: Emulator, *args: object) -> object:
        threads.add(threading.current_thread().name)
        return compute(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Emulator, "_compute", spy)
    return threads


def _batch(samples: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((samples, 3, 8, 8)).astype(np.float32)


@pytest.mark.torch
@pytest.mark.parametrize("samples", [2, 3, 7])
@pytest.mark.parametrize("record", [False, True])
def test_lanes_give_the_unsplit_bits(build: tuple[str, Path], samples: int, record: bool) -> None:
    one = Emulator.open(build[1], lanes=1)
    want = one.run(_batch(samples), record=record)
    for lanes in (2, 3):
        assert_same_run(Emulator.open(build[1], lanes=lanes).run(_batch(samples), record=record), want)
    assert one._lanes is None  # one lane never makes lane state


@pytest.mark.torch
def test_the_builds_cover_both_products_and_slicing(build: tuple[str, Path]) -> None:
    emu = Emulator.open(build[1], lanes=2)
    emu.run(_batch(2))
    assert emu._lanes is not None
    kinds = {(layer.sliced, gemm.integer) for layer, gemm in zip(emu.layers, emu._lanes.products, strict=True)}
    assert kinds == {"plain": {(False, True)}, "sliced": {(True, True)}, "float": {(False, False)}}[build[0]]
    for gemm in emu._lanes.products:  # a lane per core: each lane's products on its own thread
        assert gemm.session.get_session_options().intra_op_num_threads == lanes_module.lane_threads(2)


@pytest.mark.torch
def test_lanes_run_on_several_threads_and_reuse_their_scratch(build: tuple[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    emu = Emulator.open(build[1], lanes=2)
    threads = computing_threads(monkeypatch)
    first = emu.run(_batch(4))
    assert len(threads) == 2 and threading.current_thread().name in threads
    assert emu._lanes is not None and not emu._lanes.lock.locked()
    buffers = [dict(w._buffers) for w in emu._lanes.workspaces]
    assert all(buffers)
    second = emu.run(_batch(4, seed=1))
    for work, before in zip(emu._lanes.workspaces, buffers, strict=True):
        assert all(work._buffers[name] is buffer for name, buffer in before.items())
    for run in (first, second):  # outputs never alias a lane's scratch
        for value in run.outputs.values():
            assert not any(np.shares_memory(value, b) for w in emu._lanes.workspaces for b in w._buffers.values())
    (a, b) = (next(iter(r.outputs.values())) for r in (first, second))
    assert not np.array_equal(a, b)


@pytest.mark.torch
def test_a_run_while_the_lanes_are_held_runs_unsplit_with_the_same_bits(build: tuple[str, Path],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    emu = Emulator.open(build[1], lanes=2)
    want = emu.run(_batch(4))
    assert emu._lanes is not None
    threads = computing_threads(monkeypatch)
    with emu._lanes.lock:
        got = emu.run(_batch(4))
    assert threads == {threading.current_thread().name}
    assert_same_run(got, want)


@pytest.mark.torch
def test_a_model_that_mixes_its_batch_never_splits(build: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emulator_run, "mixes_batch", lambda op, attrs: op == "Gemm")
    emu = Emulator.open(build[1], lanes=2)
    emu.run(_batch(4))
    assert emu._lanes is None


@pytest.mark.torch
def test_one_chunk_is_the_run_itself_not_a_copy(build: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """One lane, or one sample: the run's own arrays come back (concatenating one chunk would
    copy every output and trace)."""
    def no_concat(runs: object) -> None:
        raise AssertionError("one chunk was concatenated")

    monkeypatch.setattr(emulator_run, "concat_runs", no_concat)
    Emulator.open(build[1], lanes=1).run(_batch(3), record=True)
    Emulator.open(build[1], lanes=2).run(_batch(1), record=True)
