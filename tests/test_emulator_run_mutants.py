"""What the survivors of the mutation run of ``cimc/emulator/run.py`` (``docs/mutation.md``)
left untested: a padded ``1 × 1`` layer takes the general gather (not the rows of the codes), a
run without traces leaves the ADC codes out with the trace's shape, and the two error messages
that name what was wrong say it exactly (the sample shape; the cause cut at 120 characters);
a batch-mixing model's chunks cut the inputs that carry the batch, not a broadcast operand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import cimc.emulator.run as emulator_run
from cimc.api import CompileOptions, compile_model
from cimc.emulator import Emulator
from cimc.errors import BuildError, UsageError
from tests.cim_helpers import assert_three_way, compile_ir, small_cnn, write
from tests.ir_builders import add_conv, graph_with_input
from tests.onnx_builders import make_model, node, run_ort

pytestmark = pytest.mark.torch  # the compile helpers import the zoo


@pytest.fixture(scope="module")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    graph, ctx = compile_ir(small_cnn(batch=2))
    return write(graph, ctx, tmp_path_factory.mktemp("small") / "b")


def test_padded_one_by_one_conv_equals_onnxruntime(tmp_path: Path) -> None:
    """A ``1 × 1`` layer with padding 1 reads the zero border (the rows fast path is for
    unpadded ``1 × 1`` layers only): codes, sums and outputs equal onnxruntime and the reference."""
    g = graph_with_input((2, 3, 5, 5))
    g.outputs.append(add_conv(g, "x", 8, 1, pad=1, rng=np.random.default_rng(4), name="c1"))
    graph, ctx = compile_ir(g)
    build = write(graph, ctx, tmp_path / "b")
    layer = Emulator.open(build).layers[0]
    assert layer.kernel == (1, 1) and any(layer.pads)
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 5)).astype(np.float32)
    run = assert_three_way(build, graph, x)
    assert next(iter(run.outputs.values())).shape == (2, 8, 7, 7)


def test_unrecorded_layer_leaves_out_adc_codes_with_the_trace_shape(small_build: Path) -> None:
    """``run_layer(record=False)``: the ADC codes are ``(N, 0, Cout, Ho, Wo)`` (no conversion
    kept), the other fields those of a recorded run."""
    emu = Emulator.open(small_build)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)  # N, C, W all differ
    kept = emulator_run.run_layer(emu.layers[0], emu._gemms[0], x, record=True)
    bare = emulator_run.run_layer(emu.layers[0], emu._gemms[0], x, record=False)
    n, _, cout, ho, wo = kept.adc_codes.shape
    assert bare.adc_codes.shape == (n, 0, cout, ho, wo) == (2, 0, *kept.outputs.shape[1:])
    assert bare.adc_codes.dtype == np.float32
    np.testing.assert_array_equal(bare.sums, kept.sums)
    np.testing.assert_array_equal(bare.outputs, kept.outputs)


def test_wrong_sample_shape_names_both_shapes(small_build: Path) -> None:
    """An input of samples ``3 × 9 × 9`` for a model of ``3 × 8 × 8``: the message gives the
    sample shape (the batch axis left out) and the expected one."""
    emu = Emulator.open(small_build)
    with pytest.raises(UsageError, match=r"samples of shape \[3, 9, 9\], the model expects \[3, 8, 8\]"):
        emu.feeds(np.zeros((2, 3, 9, 9), dtype=np.float32))


def test_digital_op_error_cuts_the_cause_at_120_characters(small_build: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A digital op's exception text is quoted in the ``BuildError`` cut to 120 characters
    (bounded messages on untrusted builds)."""
    def failing(op: str, args: list[np.ndarray], attrs: object) -> np.ndarray:
        raise ValueError("e" * 500)

    monkeypatch.setattr(emulator_run, "digital_op", failing)
    emu = Emulator.open(small_build)
    with pytest.raises(BuildError) as info:
        emu.run(np.zeros((2, 3, 8, 8), dtype=np.float32))
    assert str(info.value).endswith(": ValueError: " + "e" * 120)


def test_batch_mixing_chunks_cut_the_batched_input_not_the_operand(tmp_path: Path) -> None:
    """Flatten on axis 0 (static batch 2) then Add of a ``(4, 1)`` operand, run on 4 samples: two
    chunks of ``x`` (``(2, 3)`` each), ``z`` whole in both, ``(8, 6)`` in all; cutting ``z``
    instead (``(2, 1)`` chunks next to the whole ``x``) gives ``(4, 12)``."""
    path = tmp_path / "m.onnx"
    onnx.save(make_model([node("Flatten", ["x"], ["f"], axis=0), node("Add", ["f", "z"], ["y"])],
                         {"x": (2, 3), "z": (4, 1)}, ["y"]), str(path))
    compile_model(str(path), tmp_path / "b", CompileOptions(map_fc=True))
    rng = np.random.default_rng(6)
    x, z = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 1)).astype(np.float32)
    got = Emulator.open(tmp_path / "b").run({"x": x, "z": z}).outputs["y"]
    model = onnx.load(str(tmp_path / "b" / "model.cim.onnx"))
    expected = np.concatenate([run_ort(model, {"x": x[i:i + 2], "z": z})["y"] for i in (0, 2)])
    assert got.shape == expected.shape == (8, 6)
    np.testing.assert_array_equal(got, expected)
