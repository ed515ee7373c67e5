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


def measure(model: str, batch: int, rounds: int, work: Path, fresh: bool, lanes: int | None = None) -> dict[str, Any]:
    """Median per-round ratios of the emulator and of ``model.cim.onnx`` to the float model."""
    import onnxruntime as ort

    from cimc.emulator import Emulator
    from cimc.frontend import import_onnx
    from cimc.lowering.model import float_model_bytes

    build = prepare(model, work, fresh)
    graph = import_onnx(work / f"{model}.onnx")
    providers, options = ["CPUExecutionProvider"], ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # module doc
    float_session = ort.InferenceSession(float_model_bytes(graph), options, providers=providers)
    cim_session = ort.InferenceSession(str(build / "model.cim.onnx"), options, providers=providers)
    emulator = Emulator.open(build, lanes)
    name = emulator.inputs[0].name
    shape = [batch, *emulator.inputs[0].shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = emulator.run(x).outputs
    want = cim_session.run(list(got), {name: x})
    exact = all(np.array_equal(a, b) for a, b in zip(got.values(), want, strict=True))
    calls = {"float": lambda: float_session.run(None, {name: x}), "emulator": lambda: emulator.run(x),
             "cim_onnx": lambda: cim_session.run(None, {name: x})}
    order = list(calls)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in calls}
    load = os.getloadavg()[0]
    for i in range(rounds):
        for key in order[i % 3:] + order[:i % 3]:
            times[key].append(_timed(calls[key]))

    def ratio(key: str, kind: int) -> float:
        return round(statistics.median(t[kind] / f[kind] for t, f in zip(times[key], times["float"], strict=True)), 3)

    return {"model": model, "batch": batch, "rounds": rounds, "bit_exact": exact, "lanes": emulator.lane_count,
            "median_wall_s": {k: round(statistics.median(t[0] for t in v), 4) for k, v in times.items()},
            "median_cpu_s": {k: round(statistics.median(t[1] for t in v), 4) for k, v in times.items()},
            "wall_ratio": {k: ratio(k, 0) for k in ("emulator", "cim_onnx")},
            "cpu_ratio": {k: ratio(k, 1) for k in ("emulator", "cim_onnx")},
            "load": [round(load, 2), round(os.getloadavg()[0], 2)],
            "numpy": np.__version__, "onnxruntime": ort.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("vgg9", "resnet50"), default="vgg9")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, required=True, help="folder for the exported model and its build")
    parser.add_argument("--fresh", action="store_true", help="export and compile again")
    parser.add_argument("--lanes", type=int, default=None, help="the emulator's lanes (default: one per core)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.batch, args.rounds, args.work, args.fresh, args.lanes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
