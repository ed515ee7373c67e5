"""The emulator's allocation-free paths give the bits of the plain ones: its ``Workspace``
(reused scratch), the outputs of runs without ``record`` converted in place
(``run.layer_outputs``), Relu and Add written over a free input (``run.in_place_target``) and
its MaxPool (``pool.max_pool``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cimc.emulator.run as emulator_run
from cimc.emulator import Emulator
from cimc.emulator.pool import max_pool
from cimc.emulator.workspace import Workspace
from cimc.ir.graph import Graph
from cimc.quant.reference import digital_op
from tests.cim_helpers import add_node, compile_ir, write
from tests.ir_builders import add_conv, add_unary, graph_with_input

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


def test_workspace_reuses_a_buffer_that_fits_and_grows_one_that_does_not() -> None:
    work = Workspace()
    a = work.array("a", (2, 3))
    assert a.shape == (2, 3) and a.dtype == np.float32 and a.flags.c_contiguous
    assert np.shares_memory(work.array("a", (3, 2)), a)  # same size: the same memory
    assert np.shares_memory(work.array("a", (5,)), a)  # smaller
    assert not np.shares_memory(work.array("a", (7,)), a)  # larger: a new buffer
    assert not np.shares_memory(work.array("b", (2, 3)), work.array("a", (2, 3)))


def test_workspace_like_keeps_the_memory_order() -> None:
    cm = np.zeros((4, 5, 6, 2), dtype=np.float32).transpose(3, 0, 1, 2)  # (N, C, H, W) channel-major
    like = Workspace().like("x", cm)
    assert like.shape == cm.shape and like.strides == cm.strides
    plain = np.zeros((2, 4, 5, 6), dtype=np.float32)
    assert Workspace().like("x", plain).flags.c_contiguous


def net_with_a_live_relu_input(batch: int = 2) -> Graph:
    """conv (3×3, padded) → relu, whose input the Add reads again; conv → relu → conv (1×1)
    → add of the two relus' sums: a Relu that must not run in place and two that may."""
    rng = np.random.default_rng(4)
    g = graph_with_input((batch, 3, 6, 6))
    c1 = add_conv(g, "x", 12, 3, pad=1, rng=rng, name="c1")
    r1 = add_unary(g, "Relu", c1, "r1")
    c2 = add_conv(g, r1, 12, 3, pad=1, rng=rng, name="c2")
    r2 = add_unary(g, "Relu", c2, "r2")
    c3 = add_conv(g, r2, 12, 1, rng=rng, name="c3")
    s = add_node(g, "Add", [c3, c1], g.shape(c3), "add")
    g.outputs.append(add_node(g, "MaxPool", [s], (batch, 12, 3, 3), "pool", kernel_shape=(3, 3), strides=(2, 2),
                              pads=(1, 1, 1, 1), dilations=(1, 1), ceil_mode=0))
    return g


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    graph, ctx = compile_ir(net_with_a_live_relu_input())
    return write(graph, ctx, tmp_path_factory.mktemp("scratch") / "b")


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, 3, 6, 6)).astype(np.float32)


def test_runs_without_record_equal_recorded_runs_again_and_again(live: Path) -> None:
    """Three runs without ``record`` on one emulator (its workspace reused, the second and third
    on other inputs) give the outputs of recorded runs; an earlier run's outputs are not
    overwritten by a later one and never alias the workspace (one lane: the lanes' own
    workspaces, ``test_emulator_lanes``)."""
    emu = Emulator.open(live, lanes=1)
    runs = [(emu.run(_x(seed)), emu.run(_x(seed), record=True)) for seed in (0, 1, 2)]
    assert emu._work._buffers
    for lean, full in runs:
        for name, value in lean.outputs.items():
            np.testing.assert_array_equal(value, full.outputs[name], err_msg=name)
            assert not any(np.shares_memory(value, b) for b in emu._work._buffers.values())
    assert not np.array_equal(*(next(iter(run.outputs.values())) for run, _ in runs[:2]))


def test_relu_runs_in_place_only_on_a_free_input(live: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """r2's input (c2, read by r2 alone) is free: c2's layer applies r2 itself
    (``fused_relus``); r1's input c1 is read by the Add too: r1 runs in the reference's kernel,
    and the Add (c3 free) in place; a recorded run fuses nothing and runs r2 in place."""
    seen: list[str] = []
    for op, kernel in list(emulator_run.IN_PLACE.items()):
        def spy(args: list[np.ndarray], out: np.ndarray, op: str = op, kernel: Any = kernel) -> np.ndarray:
            seen.append(op)
            return kernel(args, out)
        monkeypatch.setitem(emulator_run.IN_PLACE, op, spy)
    emu = Emulator.open(live, lanes=1)
    c2 = next(node.outputs[0] for node, _ in emu.nodes if node.name == "c2")
    assert emu._relu_fused == {c2}
    lean = emu.run(_x())
    assert seen == ["Add"]
    seen.clear()
    full = emu.run(_x(), record=True)
    assert seen == []  # a recorded run keeps every tensor: nothing is free
    for name, value in lean.outputs.items():
        np.testing.assert_array_equal(value, full.outputs[name])


def test_fused_relus_take_a_layer_output_a_lone_relu_reads() -> None:
    """A CIM layer's output read by one Relu alone; not one also read by another node, nor a
    graph output, nor a digital node's output, nor one a Sigmoid reads."""
    from cimc.documents.graph import NodeDoc

    def node(name: str, op: str, inputs: list[str], layer: int | None = None) -> tuple[NodeDoc, dict[str, Any]]:
        return NodeDoc(name=name, op=op, inputs=inputs, outputs=[name], attrs={}, cim_layer=layer), {}

    nodes = [node("a", "Conv", ["x"], 0), node("ra", "Relu", ["a"]),
             node("b", "Conv", ["ra"], 1), node("rb", "Relu", ["b"]), node("sb", "Add", ["b", "rb"]),
             node("c", "Conv", ["sb"], 2), node("rc", "Relu", ["c"]),
             node("d", "Add", ["rc", "rc"]), node("rd", "Relu", ["d"]),
             node("e", "Conv", ["rd"], 3), node("se", "Sigmoid", ["e"])]
    assert emulator_run.fused_relus(nodes, {"c"}) == {"a"}
    assert emulator_run.fused_relus(nodes, set()) == {"a", "c"}


def test_in_place_target_needs_a_free_input_of_the_output_shape() -> None:
    a, b, row = (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), np.zeros((1, 3), np.float32))
    assert emulator_run.in_place_target("Add", [a, b], [False, True]) == 1
    assert emulator_run.in_place_target("Add", [a, b], [True, True]) == 0
    assert emulator_run.in_place_target("Add", [row, a], [True, False]) is None  # broadcast: too small
    assert emulator_run.in_place_target("Add", [a, b.astype(np.float64)], [True, True]) is None
    assert emulator_run.in_place_target("Sub", [a, b], [True, True]) is None
    assert emulator_run.in_place_target("Relu", [a], [False]) is None


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "dilations": (1, 1), "ceil_mode": 0},
    {"kernel_shape": (2, 3), "strides": (1, 2), "pads": (0, 1, 1, 0), "dilations": (2, 1), "ceil_mode": 1},
    {"kernel_shape": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0), "dilations": (1, 1), "ceil_mode": 1},
])
def test_max_pool_equals_the_reference_kernel(attrs: dict[str, Any]) -> None:
    """Channel-major and C-contiguous inputs with −∞, NaN and negative values, a reused
    workspace whose buffer holds other values: the reference kernel's values and shape."""
    rng = np.random.default_rng(2)
    work = Workspace()
    work.array("pool", (4000,))[:] = 7.0
    for x in (rng.standard_normal((3, 7, 9, 2)).astype(np.float32).transpose(3, 0, 1, 2) - 5,
              rng.standard_normal((2, 3, 7, 9)).astype(np.float32) - 5):
        x[0, 0, 0, :3] = [-np.inf, np.nan, -np.inf]
        want = digital_op("MaxPool", [np.ascontiguousarray(x)], attrs)
        got = max_pool(x, attrs, work)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_bitline_sessions_use_default_threads_that_do_not_spin(live: Path) -> None:
    """The MatMul sessions keep onnxruntime's default thread count (0: every core, as the float
    model has) and their workers do not spin between runs (``bitline_product``)."""
    for gemm in Emulator.open(live)._gemms:
        options = gemm.session.get_session_options()
        assert options.intra_op_num_threads == 0
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def _adc_calls(monkeypatch: pytest.MonkeyPatch, layer: Any, parts: list[np.ndarray]) -> list[int]:
    """The pixel count of each block ``convert_and_add`` hands the ADC loop (one part)."""
    calls = []
    original = emulator_run.kernels.convert_rows

    def spy(*args: Any) -> None:
        calls.append(args[2])  # the block's pixel count
        original(*args)

    monkeypatch.setattr(emulator_run.kernels, "convert_rows", spy)
    emulator_run.convert_and_add(layer, parts, Workspace())
    monkeypatch.setattr(emulator_run.kernels, "convert_rows", original)
    return calls


def test_adc_blocks_hold_one_mebibyte_of_partial_sums(live: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two segments of 128 channels × 2048 pixels (2 MiB of partial sums) convert in two blocks
    of 1024 pixels (``BLOCK_BYTES = 2^20``), 2000 pixels in 1024 and 976; with ``BLOCK_BYTES``
    below one pixel's sums, one block per pixel."""
    layer = dataclasses.replace(Emulator.open(live).layers[0], cout=128, segments=2,
                                adc_step=np.ones(1, np.float32), scale=np.ones(1, np.float32),
                                bias=np.zeros(1, np.float32))
    parts = [np.zeros((2, 1, 2048, 128), dtype=np.int32)]
    assert _adc_calls(monkeypatch, layer, parts) == [1024, 1024]
    assert _adc_calls(monkeypatch, layer, [parts[0][:, :, :2000]]) == [1024, 976]  # the last block is short
    monkeypatch.setattr(emulator_run, "BLOCK_BYTES", 4)
    assert _adc_calls(monkeypatch, layer, parts) == [1] * 2048


def test_the_adder_tree_sums_into_the_output(live: Path) -> None:
    """A layer of one segment: ``P`` is its ADC codes; of two, their sum; either is summed in
    the pixel-major output ``(M, Cout)`` itself, a new array (no workspace buffer)."""
    layer = dataclasses.replace(Emulator.open(live).layers[0], cout=3, segments=1, adc_step=np.ones(1, np.float32),
                                scale=np.ones(1, np.float32), bias=np.zeros(1, np.float32))
    codes = (np.arange(24, dtype=np.int32) % 7 - 3).reshape(1, 1, 8, 3)  # ADC codes already, (S, G, M, Cout)
    work = Workspace()
    y = emulator_run.convert_and_add(layer, [codes.copy()], work)
    np.testing.assert_array_equal(y, codes[0, 0])
    two = dataclasses.replace(layer, segments=2)
    y2 = emulator_run.convert_and_add(two, [np.concatenate([codes, codes])], work)
    assert not work._buffers and not np.shares_memory(y, y2)
    np.testing.assert_array_equal(y2, 2 * codes[0, 0])


def test_runs_from_several_threads_equal_one_thread(live: Path) -> None:
    """The workspace serves one run at a time: concurrent runs of one emulator (threads) take a
    workspace of their own and give the outputs a lone run gives."""
    from concurrent.futures import ThreadPoolExecutor

    emulator = Emulator.open(live)
    shape = [4, *emulator.inputs[0].shape[1:]]
    batches = [np.random.default_rng(seed).standard_normal(shape).astype(np.float32) for seed in range(6)]
    want = [emulator.run(x).outputs for x in batches]
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(lambda x: emulator.run(x).outputs, batches * 3))
    for i, outputs in enumerate(got):
        for name, value in want[i % len(batches)].items():
            np.testing.assert_array_equal(outputs[name], value)


def test_a_run_releases_the_workspace_for_the_next(live: Path) -> None:
    """After a run the workspace is free again: the next run reuses its buffers (a run that kept
    it would send every later run to a fresh workspace, the same bits at a fresh run's cost)."""
    emulator = Emulator.open(live, lanes=1)
    emulator.run(_x())
    buffers = dict(emulator._work._buffers)
    assert buffers and not emulator._work_lock.locked()
    emulator.run(_x(1))
    assert all(emulator._work._buffers[name] is buffer for name, buffer in buffers.items())


def test_the_adder_tree_sums_every_part_per_group(live: Path) -> None:
    """Two segment parts of a two-group layer (one segment, then two): ``P`` of each group and
    pixel is the sum of its codes over all three segments, output channel ``o = g·Cout_g + j``."""
    layer = dataclasses.replace(Emulator.open(live).layers[0], cout=4, segments=3, adc_step=np.ones(1, np.float32),
                                scale=np.ones(1, np.float32), bias=np.zeros(1, np.float32))
    rng = np.random.default_rng(5)
    first, second = (rng.integers(-3, 4, (s, 2, 5, 2)).astype(np.int32) for s in (1, 2))
    y = emulator_run.convert_and_add(layer, [first.copy(), second.copy()], Workspace())
    total = first.sum(axis=0) + second.sum(axis=0)  # (G, M, Cout_g)
    np.testing.assert_array_equal(y, total.transpose(1, 0, 2).reshape(5, 4))  # (M, Cout), pixel-major


def test_recorded_sums_are_their_own_contiguous_arrays(live: Path) -> None:
    """A recording run's sums ``(N, Cout, Ho, Wo)`` are laid out in that order (not a transposed
    view of the pixel-major adder tree)."""
    traces = Emulator.open(live).run(_x(), record=True).traces
    assert traces and all(trace.sums.flags.c_contiguous for trace in traces.values())


def test_an_add_overwrites_the_output_of_a_fused_relu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conv → relu (fused into the conv) → add with the graph input: the relu's output is the
    run's own array, so the Add overwrites it (the input is the caller's, never overwritten);
    the outputs are the recorded run's."""
    g = graph_with_input((2, 3, 6, 6))
    c1 = add_conv(g, "x", 3, 3, pad=1, rng=np.random.default_rng(5), name="c1")
    g.outputs.append(add_node(g, "Add", [add_unary(g, "Relu", c1, "r1"), "x"], (2, 3, 6, 6), "add"))
    graph, ctx = compile_ir(g)
    emu = Emulator.open(write(graph, ctx, tmp_path / "b"), lanes=1)
    seen: list[str] = []
    kernel = emulator_run.IN_PLACE["Add"]

    def spy(args: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        seen.append("Add")
        return kernel(args, out)

    monkeypatch.setitem(emulator_run.IN_PLACE, "Add", spy)
    x = _x()
    kept = x.copy()
    lean = emu.run(x)
    assert seen == ["Add"]
    np.testing.assert_array_equal(x, kept)
    for name, value in emu.run(x, record=True).outputs.items():
        np.testing.assert_array_equal(lean.outputs[name], value)


def test_float32_copies_only_what_is_not_c_contiguous_float32() -> None:
    """The DAC's input: a C-contiguous float32 array as it is; a strided one or a float64 one
    as a float32 copy (the compiled DAC divides in the input's own precision)."""
    work = Workspace()
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert emulator_run._float32(x, work) is x
    for other in (x[:, ::2], x.astype(np.float64)):
        got = emulator_run._float32(other, work)
        assert got.dtype == np.float32 and got.flags.c_contiguous and not np.shares_memory(got, x)
        np.testing.assert_array_equal(got, other)


def test_padded_codes_set_every_border_cell_of_a_reused_buffer(live: Path) -> None:
    """Pads about as wide as the image (2 rows above, 3 below, 1 and 4 columns on the sides of
    a 4 × 3 image): every border cell holds the fed code of 0 even where the buffer held other
    values; the interior is left to the DAC."""
    layer = dataclasses.replace(Emulator.open(live).layers[0], pads=(2, 1, 3, 4))
    work = Workspace()
    work.array("laid", (10_000,), np.uint8)[:] = 99
    padded = emulator_run.padded_codes(layer, (2, 5, 4, 3), work, (np.uint8, 7))
    assert padded.shape == (9, 8, 2, 5)  # (H + pads, W + pads, N, C)
    border = np.ones(padded.shape, dtype=bool)
    border[2:6, 1:4] = False
    assert np.all(padded[border] == 7)
