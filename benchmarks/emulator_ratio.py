"""Emulator and ``model.cim.onnx`` against onnxruntime's float model, in one process (issue 19).

    python3 -m benchmarks.emulator_ratio --model vgg9 --batch 64 --rounds 5 --work /tmp/emu
    python3 -m benchmarks.emulator_ratio --model resnet50 --batch 8 --rounds 3 --work /tmp/emu

The model is compiled once with the default pipeline into ``--work`` (kept, so a second run
reuses the build: pass ``--fresh`` to recompile): ``vgg9`` is the zoo's VGG9 (32×32), ``resnet50``
the real-model corpus's ResNet-50 (``tests/models``, 224×224, dynamo export; needs torch).
Each round times, in a rotating order, onnxruntime on the float model, the emulator
(``Emulator.run``) and onnxruntime on ``model.cim.onnx`` on the same seeded batch; the ratio
of a round is its time over the float time of the same round, and the medians of the per-round
ratios (wall time, and CPU time of all the process's threads, which a loaded machine disturbs
less) are printed with the load average before and after. The emulator's and
``model.cim.onnx``'s outputs are checked equal bit for bit once before timing.

Both onnxruntime sessions keep their default threads (one per core) but do not spin after a
run, as the emulator's own sessions do not: a spinning pool holds both cores for a while after
its run, so that whatever the rotation runs next is slowed (session 11: VGG9's float model
measured 0.084 s after the spinning ``model.cim.onnx`` session against 0.053 s without spinning,
which made the emulator's ratio read 1.07 instead of 1.57; ``benchmarks/results/emulator.md``).
The emulator runs with its default lanes (one per core, ``cimc.emulator.lanes``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def _export(model: str, path: Path) -> None:
    if model == "vgg9":
        import cimc.models as models

        models.export_onnx("vgg9", path)
        return
    from tests.models import build
    from tests.models.export import export

    net, x = build(model, small=False)
    export(net, x, path, "dynamo")


def prepare(model: str, work: Path, fresh: bool) -> Path:
    """The build folder of ``model`` under ``work`` (compiled unless present)."""
    from cimc.api import compile_model

    work.mkdir(parents=True, exist_ok=True)
    onnx_path, build = work / f"{model}.onnx", work / f"{model}.build"
    if fresh or not onnx_path.exists():
        _export(model, onnx_path)
    if fresh or not (build / "model.cim.onnx").exists():
        compile_model(onnx_path, build, force=True)
    return build


def _timed(fn: Any) -> tuple[float, float]:
    """Wall and CPU seconds (every thread of the process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def session_options() -> Any:
    """onnxruntime options of every session here: default threads, not spinning (module doc)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def float_session(model: str, work: Path) -> Any:
    """onnxruntime on the float model of ``work/model.onnx`` (as imported by cimc)."""
    import onnxruntime as ort

    from cimc.frontend import import_onnx
    from cimc.lowering.model import float_model_bytes

    graph = import_onnx(work / f"{model}.onnx")
    return ort.InferenceSession(float_model_bytes(graph), session_options(), providers=["CPUExecutionProvider"])


def rotate(calls: dict[str, Any], rounds: int) -> dict[str, list[tuple[float, float]]]:
    """``rounds`` rounds of every call, each round in an order rotated by one: ``(wall, CPU)``."""
    order = list(calls)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in calls}
    for i in range(rounds):
        shift = i % len(order)
        for key in order[shift:] + order[:shift]:
            times[key].append(_timed(calls[key]))
    return times


def median_ratio(times: dict[str, list[tuple[float, float]]], key: str, kind: int) -> float:
    """Median over the rounds of ``key``'s time over the float model's (``kind`` 0: wall, 1: CPU)."""
    return round(statistics.median(t[kind] / f[kind] for t, f in zip(times[key], times["float"], strict=True)), 3)


def median_seconds(times: dict[str, list[tuple[float, float]]], kind: int) -> dict[str, float]:
    return {k: round(statistics.median(t[kind] for t in v), 4) for k, v in times.items()}


def model_arguments(parser: argparse.ArgumentParser, model: str, batch: int, rounds: int) -> None:
    """``--model``, ``--batch``, ``--rounds`` (with these defaults) and ``--work``."""
    parser.add_argument("--model", choices=("vgg9", "resnet50"), default=model)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--work", type=Path, required=True, help="folder for the exported model and its build")


def measure(model: str, batch: int, rounds: int, work: Path, fresh: bool, lanes: int | None = None) -> dict[str, Any]:
    """Median per-round ratios of the emulator and of ``model.cim.onnx`` to the float model."""
    import onnxruntime as ort

    from cimc.emulator import Emulator

    build = prepare(model, work, fresh)
    reference = float_session(model, work)
    cim_session = ort.InferenceSession(str(build / "model.cim.onnx"), session_options(),
                                       providers=["CPUExecutionProvider"])
    emulator = Emulator.open(build, lanes)
    name = emulator.inputs[0].name
    shape = [batch, *emulator.inputs[0].shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = emulator.run(x).outputs
    want = cim_session.run(list(got), {name: x})
    exact = all(np.array_equal(a, b) for a, b in zip(got.values(), want, strict=True))
    load = os.getloadavg()[0]
    times = rotate({"float": lambda: reference.run(None, {name: x}), "emulator": lambda: emulator.run(x),
                    "cim_onnx": lambda: cim_session.run(None, {name: x})}, rounds)
    return {"model": model, "batch": batch, "rounds": rounds, "bit_exact": exact, "lanes": emulator.lane_count,
            "median_wall_s": median_seconds(times, 0), "median_cpu_s": median_seconds(times, 1),
            "wall_ratio": {k: median_ratio(times, k, 0) for k in ("emulator", "cim_onnx")},
            "cpu_ratio": {k: median_ratio(times, k, 1) for k in ("emulator", "cim_onnx")},
            "load": [round(load, 2), round(os.getloadavg()[0], 2)],
            "numpy": np.__version__, "onnxruntime": ort.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(parser, "vgg9", 64, 5)
    parser.add_argument("--fresh", action="store_true", help="export and compile again")
    parser.add_argument("--lanes", type=int, default=None, help="the emulator's lanes (default: one per core)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.batch, args.rounds, args.work, args.fresh, args.lanes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
