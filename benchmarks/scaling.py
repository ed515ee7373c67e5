"""The compile scaling curve: time and peak memory against parameters, 1 M … 200 M, and
against the number of calibration images, 16 … 512.

For each size ``P`` a ResNet-50-like model (32×32 inputs, ``benchmarks.gen_models``) is
generated, then:

* time of the mapping compile (issue 2's path: import, the four mapping passes, the build
  files) and of the ONNX floor (load + checker + infer_shapes): alternating rounds after a
  warm-up in this process (``benchmarks.harness``), medians reported;
* time of the default compile (also quantization calibrated on synthetic data,
  scale-to-shift and ``model.cim.onnx``): one run in a fresh process (``--no-default`` skips it);
* peak memory of each of the three in a fresh process: the growth of the peak resident set
  (``VmHWM``; ``ru_maxrss`` would count the parent's, inherited at fork) over the process's
  size after its imports.

A power law ``y = a·P^k`` is fitted by least squares on ``(log P, log y)``; ``k ≈ 1`` means
linear scaling. Fixed costs (process set-up, fsync, small JSON files) flatten the small
end of the curve, so the slope is also fitted on the sizes of 10 M parameters and more,
where the per-parameter work dominates. Results: ``benchmarks/results/scaling.json`` and
the plot ``scaling.png``. Run ``python3 -m benchmarks.scaling [--quick]``.

``--calib 16,64,256,512`` instead measures the default compile of one model
(``--calib-model`` millions of parameters, 25.6) with each ``--calib-size``, each in a fresh
process: its time should grow linearly in the images (slope ≤ 1.1) and its peak memory stay
flat (calibration streams layer by layer and in chunks). Results: ``scaling_calib.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_compile import IMAGE, compile_benchmark
from benchmarks.gen_models import write_model
from benchmarks.harness import Settings, measure
from benchmarks.machine import describe, machine_info

log = logging.getLogger("benchmarks.scaling")

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (1e6, 3e6, 10e6, 25.6e6, 50e6, 100e6, 200e6)
QUICK_SIZES = (1e6, 3e6, 10e6)
LINEAR_SLOPE = (0.8, 1.2)
SERIES = {"map": "o-", "default": "^-", "floor": "s-"}
LABELS = {"map": "mapping compile", "default": "default compile (with calibration)", "floor": "ONNX floor"}
_PEAK_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
from benchmarks.bench_compile import RUNNERS, onnx_floor

def high_water_kib():  # this process's peak RSS (ru_maxrss would include the parent's, inherited at fork)
    try:
        with open("/proc/self/status") as fh:
            return int(next(line for line in fh if line.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

import cimc.api, cimc.backend.macro  # imports before the baseline
base = high_water_kib()
start = time.perf_counter()
if sys.argv[1] == "floor":
    onnx_floor(Path(sys.argv[2]))
else:
    RUNNERS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]), *map(int, sys.argv[4:]))
seconds = time.perf_counter() - start
print(json.dumps({"base_kib": base, "peak_kib": high_water_kib(), "seconds": seconds}))
"""
ROOT = Path(__file__).resolve().parent.parent


def peak_memory(which: str, model: Path, out: Path, *extra: int) -> dict[str, float]:
    """Peak-RSS growth (MiB) and seconds of one run of ``which`` (``floor`` or a compile
    pipeline of ``bench_compile.RUNNERS``, given ``extra`` arguments) in a new process."""
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, which, str(model), str(out), *map(str, extra)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{which} run on {model.name} failed:\n{done.stderr[-2000:]}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return {"peak_mib": doc["peak_kib"] / 1024, "growth_mib": (doc["peak_kib"] - doc["base_kib"]) / 1024,
            "seconds": doc["seconds"]}


def fit_slope(params: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> float:
    """Exponent ``k`` of the least-squares power law ``values ≈ a·params^k``."""
    if len(params) < 2:
        return float("nan")
    k, _ = np.polyfit(np.log(np.asarray(params, float)), np.log(np.asarray(values, float)), 1)
    return float(k)


def measure_size(params: float, settings: Settings, folder: Path, with_default: bool) -> dict[str, Any]:
    """Times and peak memory of one model size (module doc)."""
    model, count = write_model(folder, params, image=IMAGE)
    timing = measure(compile_benchmark(params, "map", model=model), settings).to_dict()
    runs = {which: peak_memory(which, model, folder / "build") for which in SERIES if which != "default"}
    if with_default:
        runs["default"] = peak_memory("default", model, folder / "build")
    times = {"map": timing["run_median_s"], "floor": timing["ref_median_s"]}
    if with_default:
        times["default"] = runs["default"]["seconds"]
    point: dict[str, Any] = {
        "params": count, "file_mib": model.stat().st_size / 2**20, "time_s": times,
        "map_ratio": {"median": timing["ratio_median"], "q1": timing["ratio_q1"], "q3": timing["ratio_q3"]},
        "memory_mib": {which: run["growth_mib"] for which, run in runs.items()},
        "peak_rss_mib": {which: run["peak_mib"] for which, run in runs.items()}}
    model.unlink()
    log.warning("%.1f M params: %s; map/floor %.2f; peak growth %s", count / 1e6,
                ", ".join(f"{k} {v:.3f} s" for k, v in point["time_s"].items()), timing["ratio_median"],
                ", ".join(f"{k} {v:.0f} MiB" for k, v in point["memory_mib"].items()))
    return point


def slopes(points: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Log-log slopes of every time and memory series, over all sizes and over sizes ≥ 10 M."""
    out: dict[str, dict[str, float]] = {}
    for kind in ("time_s", "memory_mib"):
        for which in SERIES:
            have = [p for p in points if which in p[kind]]
            big = [p for p in have if p["params"] >= 10e6]
            out[f"{kind}.{which}"] = {
                "all": fit_slope([p["params"] for p in have], [p[kind][which] for p in have]),
                "from_10M": fit_slope([p["params"] for p in big], [p[kind][which] for p in big])}
    return out


def _slope(fitted: dict[str, dict[str, float]], name: str) -> str:
    k = fitted[name]
    if np.isnan(k["from_10M"]):
        return f"slope {k['all']:.2f}"
    return f"slope {k['from_10M']:.2f} from 10 M, {k['all']:.2f} overall"


def plot(points: list[dict[str, Any]], fitted: dict[str, dict[str, float]], path: Path, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, kind, title, unit in ((axes[0], "time_s", "compile time", "seconds"),
                                  (axes[1], "memory_mib", "peak memory", "peak RSS growth (MiB)")):
        for which, style in SERIES.items():
            have = [p for p in points if which in p[kind]]
            if have:
                ax.loglog([p["params"] / 1e6 for p in have], [p[kind][which] for p in have], style,
                          label=f"{LABELS[which]} ({_slope(fitted, f'{kind}.{which}')})")
        if kind == "time_s":
            ax.loglog([p["params"] / 1e6 for p in points], [2 * p["time_s"]["floor"] for p in points], ":",
                      color="grey", label="2 × floor (issue 2 target for the mapping compile)")
        ax.set(xlabel="parameters (millions)", ylabel=unit, title=title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"cimc compile scaling, ResNet-50-like models ({IMAGE}×{IMAGE} inputs)", fontsize=11)
    fig.text(0.5, 0.01, caption, ha="center", fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict(fitted: dict[str, dict[str, float]], series: str = "time_s.map") -> str:
    """``linear`` when a series' slope from 10 M parameters is within ``LINEAR_SLOPE``."""
    lo, hi = LINEAR_SLOPE
    k = fitted[series]["from_10M"]
    if np.isnan(k):
        return "undetermined (fewer than two sizes of 10 M parameters or more)"
    if k > hi:
        return f"SUPERLINEAR (slope {k:.2f} > {hi})"
    return "linear" if k >= lo else f"sublinear (slope {k:.2f} < {lo}: fixed costs still dominate)"


def calibration_curve(counts: Sequence[int], params: float, folder: Path) -> dict[str, Any]:
    """Seconds and peak memory of the default compile of one model per calibration size, with
    the log-log slope of the time from the smallest to the largest size."""
    model, count = write_model(folder, params, image=IMAGE)
    runs = [{"images": n, **peak_memory("default", model, folder / "build", n)} for n in counts]
    for run in runs:
        log.warning("%d images: %.2f s, peak %.0f MiB (growth %.0f MiB)", run["images"], run["seconds"],
                    run["peak_mib"], run["growth_mib"])
    return {"params": count, "runs": runs,
            "time_slope": fit_slope([r["images"] for r in runs], [r["seconds"] for r in runs]),
            "peak_ratio": max(r["peak_mib"] for r in runs) / min(r["peak_mib"] for r in runs)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {', '.join(f'{s / 1e6:g}M' for s in QUICK_SIZES)}")
    parser.add_argument("--sizes", help="comma-separated sizes in millions of parameters")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-default", action="store_true", help="skip the default (calibrating) compile")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--calib", help="comma-separated calibration sizes: the calibration curve instead")
    parser.add_argument("--calib-model", type=float, default=25.6, help="its model's millions of parameters")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.calib:
        with tempfile.TemporaryDirectory(prefix="cimc-scaling-") as tmp:
            curve = calibration_curve([int(n) for n in args.calib.split(",")], args.calib_model * 1e6, Path(tmp))
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"machine": machine_info(), "image": IMAGE, **curve}
        (args.out / "scaling_calib.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n",
                                                     encoding="utf-8")
        print(f"time slope {curve['time_slope']:.2f} over {args.calib}; peak max/min {curve['peak_ratio']:.2f}")
        return 0
    sizes = [float(s) * 1e6 for s in args.sizes.split(",")] if args.sizes else (QUICK_SIZES if args.quick else SIZES)
    settings = Settings(rounds=args.rounds, min_time=0.05)
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="cimc-scaling-") as tmp:
        points = [measure_size(size, settings, Path(tmp), not args.no_default) for size in sizes]
    fitted = slopes(points)
    args.out.mkdir(parents=True, exist_ok=True)
    verdicts = {which: verdict(fitted, f"time_s.{which}") for which in SERIES
                if not np.isnan(fitted[f"time_s.{which}"]["all"])}
    doc = {"machine": machine, "image": IMAGE, "points": points, "slopes": fitted, "verdict": verdicts}
    (args.out / "scaling.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    plot(points, fitted, args.out / "scaling.png", describe(machine))
    for which, text in verdicts.items():
        print(f"{LABELS[which]}: time {_slope(fitted, f'time_s.{which}')} ({text}); "
              f"memory {_slope(fitted, f'memory_mib.{which}')}")
    print(f"written to {args.out}/scaling.json and scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
