"""Compile time against the ONNX floor, on generated ResNet-50-like models.

The floor is what any tool that reads an ONNX model has to do: ``onnx.load`` +
``onnx.checker.check_model`` + ``onnx.shape_inference.infer_shapes`` on the same file.
The default compile executes the model, so it is also measured against a second floor that
does too (``CALIB_FLOOR_NAME``): the same reading, then onnxruntime's float inference of the
calibration batch (``CALIB_IMAGES`` images, the default ``--calib-size``), session creation
included. Two compiles are measured, each writing every file of its build directory:

* ``compile/<size>``: ``cimc.api.compile_model(file, folder)`` with the default options, i.e.
  also post-training quantization calibrated on synthetic data, scale-to-shift with its SQNR
  check, and ``model.cim.onnx``: this runs the model several times, so it costs far more
  than reading it;
* ``compile-vs-ort/<size>``: the same default compile against the second floor (target 2.5×);
* ``compile-map/<size>``: the mapping compile of issue 2 — import, fold-batchnorm,
  select-cim, tile-wordlines, place-bitlines, and the layout, weights, schedule and report
  files — whose target is at most twice the floor on a ResNet-50-sized model.

Models take CIFAR-size 32×32 inputs, like the paper's and the zoo's models (the mapping does
not depend on the image size; calibration does). The scaling curve is ``benchmarks.scaling``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from benchmarks.gen_models import write_model
from benchmarks.harness import Benchmark

FLOOR_NAME = "onnx load+checker+infer_shapes"
CALIB_FLOOR_NAME = "onnx load+checker+infer_shapes + onnxruntime float inference of the calibration batch"
CALIB_IMAGES = 16
RESNET50 = 25.6e6
IMAGE = 32
PIPELINES = ("default", "map")


@dataclass
class CompileState:
    folder: Path
    model: Path


def onnx_floor(path: Path) -> None:
    """What reading an ONNX model minimally costs: parse, check, infer shapes."""
    model = onnx.load(path)
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model)


def onnx_calib_floor(path: Path, images: int = CALIB_IMAGES) -> None:
    """The floor, then onnxruntime running the float model on ``images`` Gaussian images (the
    model's batch axis made symbolic, as a calibrating tool must), session creation included."""
    import numpy as np
    import onnxruntime as ort

    model = onnx.load(path)
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model)
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((images, *first.shape[1:])).astype(np.float32)
    session.run(None, {first.name: x})


def compile_file(path: Path, out: Path, calib_size: int | None = None) -> None:
    """``cimc compile`` with the default options (or ``--calib-size calib_size``), through the API."""
    from cimc.api import CompileOptions, compile_model

    compile_model(path, out, CompileOptions() if calib_size is None else CompileOptions(calib_size=calib_size))


def map_file(path: Path, out: Path) -> None:
    """The mapping compile: import, the four mapping passes, the build files (unquantized)."""
    from cimc.api import CompileOptions, load_source
    from cimc.backend.macro import build_files
    from cimc.build.directory import write_build
    from cimc.macro import load_macro
    from cimc.passes.fold_batchnorm import FoldBatchNorm
    from cimc.passes.manager import PassContext, run_passes
    from cimc.passes.place_bitlines import PlaceBitlines
    from cimc.passes.select_cim import SelectCim
    from cimc.passes.tile_wordlines import TileWordlines

    options = CompileOptions()
    graph, source = load_source(path, options)
    ctx = PassContext(macro=load_macro(None))
    graph = run_passes(graph, [FoldBatchNorm(), SelectCim(), TileWordlines(), PlaceBitlines()], ctx)
    build = build_files(graph, ctx.macro, None, source, options.public())
    write_build(out, build.files, build.manifest)


RUNNERS = {"default": compile_file, "map": map_file}


def _setup(params: float, model: Path | None) -> CompileState:
    folder = Path(tempfile.mkdtemp(prefix="cimc-bench-compile-"))
    return CompileState(folder, model if model is not None else write_model(folder, params, image=IMAGE)[0])


def compile_benchmark(params: float, pipeline: str = "default", target: float | None = None,
                      rounds: int | None = None, model: Path | None = None, with_ort: bool = False) -> Benchmark:
    """``compile[-map]/<size>``: the generated model of about ``params`` parameters (or
    ``model``, a file made by the caller) compiled by ``pipeline``, against the floor
    (``with_ort``: ``compile-vs-ort/<size>``, against the floor with the calibration batch's
    float inference)."""
    label = "resnet50" if params == RESNET50 else f"{params / 1e6:g}M"
    runner = RUNNERS[pipeline]
    prefix = "compile-vs-ort" if with_ort else "compile" if pipeline == "default" else "compile-map"
    return Benchmark(
        name=f"{prefix}/{label}",
        setup=lambda: _setup(params, model),
        run=lambda s: runner(s.model, s.folder / "build"),
        reference=(lambda s: onnx_calib_floor(s.model)) if with_ort else (lambda s: onnx_floor(s.model)),
        reference_name=CALIB_FLOOR_NAME if with_ort else FLOOR_NAME,
        target_ratio=target,
        teardown=lambda s: shutil.rmtree(s.folder, ignore_errors=True),
        rounds=rounds,
    )


def benchmarks(quick: bool) -> list[Benchmark]:
    if quick:
        return [compile_benchmark(1e6, "map"), compile_benchmark(RESNET50, "map", target=2.0),
                compile_benchmark(1e6, "default")]
    return [compile_benchmark(1e6, "map"), compile_benchmark(10e6, "map"),
            compile_benchmark(RESNET50, "map", target=2.0), compile_benchmark(100e6, "map", rounds=5),
            compile_benchmark(1e6, "default"), compile_benchmark(RESNET50, "default", target=2.0, rounds=3),
            compile_benchmark(RESNET50, "default", target=2.5, rounds=3, with_ort=True)]
