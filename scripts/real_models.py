"""Evidence for real models: every architecture of ``tests/models`` × exporter through ``cimc compile``.

    python3 scripts/real_models.py --small          # small variants (seconds per model)
    python3 scripts/real_models.py                  # the published 224×224 networks
    python3 scripts/real_models.py --only resnet18 --only unet_bilinear --timeout 600   # replaces those rows

For each architecture and exporter (torch 2.13's default dynamo exporter, ``torch.onnx.export(model,
(x,), path)``, and the legacy one, ``dynamo=False``; see ``tests/models/export.py``) it exports the
model, lists the ONNX op types, runs ``cimc compile`` (default options) as a subprocess and measures its
wall time and peak RSS (``ru_maxrss``, through a small launcher process), records the exit code and the
first error line, and, for a build, runs ``cimc validate`` and reads bitlines, macros and macro usage
from ``report.json``. Results go to ``benchmarks/results/real_models[_small].json``;
``benchmarks/results/real_models.md`` is rendered from whichever of the two exist, with the unsupported
ops ranked by how many exports they block.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CLI = "import sys; from cimc.cli.main import main; sys.argv[0] = 'cimc'; main()"
UNSUPPORTED = re.compile(r"([A-Za-z0-9_.]+) \(node '")


#: Runs the command given after ``RESULT TIMEOUT`` and writes its wall time, exit code and peak RSS to
#: RESULT. A small process in between is needed: on Linux a child's ``ru_maxrss`` starts from its
#: parent's RSS at fork (kept across exec), which for this script, holding torch and a model, would
#: swamp cimc's own figure.
LAUNCHER = """
import json, resource, subprocess, sys, time
result, timeout, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = time.perf_counter()
proc = subprocess.Popen(args)
try:
    rc, timed_out = proc.wait(timeout=timeout), False
except subprocess.TimeoutExpired:
    proc.kill()
    rc, timed_out = proc.wait(), True
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
json.dump({"rc": rc, "seconds": seconds, "peak_rss_kib": peak, "timed_out": timed_out}, open(result, "w"))
"""


def run_measured(args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``args``; exit code, wall seconds, peak RSS (MiB) of that process, stdout and stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        done = subprocess.run([sys.executable, "-c", LAUNCHER, str(result), str(timeout), *args], capture_output=True,
                              text=True, env=_env(), check=False)
        measured = json.loads(result.read_text())
    return {"rc": measured["rc"], "seconds": round(measured["seconds"], 2),
            "peak_rss_mib": round(measured["peak_rss_kib"] / 1024, 1), "timed_out": measured["timed_out"],
            "stdout": done.stdout, "stderr": done.stderr}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def first_error(stderr: str) -> str:
    """The first ``cimc: error`` line (else the last non-empty line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("cimc: error")), lines[-1] if lines else "")


def unsupported_ops(error: str) -> list[str]:
    return sorted(set(UNSUPPORTED.findall(error.split("(hint:")[0]))) if "unsupported op" in error else []


def measure(name: str, exporter: str, small: bool, folder: Path, timeout: float) -> dict[str, Any]:
    from tests.models import REGISTRY, build
    from tests.models.export import export, op_types, opset

    arch = REGISTRY[name]
    record: dict[str, Any] = {"model": name, "exporter": exporter, "small": small,
                              "input_shape": list(arch.small_shape if small else arch.full_shape),
                              "kwargs": arch.small if small else arch.full}
    model, x = build(name, small)
    record["params"] = sum(p.numel() for p in model.parameters())
    path = folder / f"{name}-{exporter}.onnx"
    start = time.perf_counter()
    try:
        proto = export(model, x, path, exporter)  # type: ignore[arg-type]
    except Exception as error:  # an exporter failure is a result, not a crash of the script
        record.update(exported=False, export_error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")
        return record
    finally:
        record["export_seconds"] = round(time.perf_counter() - start, 2)
    del model
    record.update(exported=True, opset=opset(proto), ops=op_types(proto), nodes=len(proto.graph.node),
                  onnx_mib=round(sum(f.stat().st_size for f in folder.glob(f"{path.name}*")) / 2**20, 2))
    record.update(compile_and_validate(path, folder / f"{name}-{exporter}.build", timeout,
                                       ("bitlines", "macros", "macro_usage", "segments", "adc_conversions",
                                        "computing_cycles")))
    if "error" in record:
        record["unsupported_ops"] = unsupported_ops(record["error"])
    return record


def compile_and_validate(path: Path, out: Path, timeout: float, totals: tuple[str, ...]) -> dict[str, Any]:
    """``cimc compile path -o out`` (default options) then ``cimc validate out``, each a measured
    subprocess: exit code, wall time, peak RSS, the first error line, the report's ``totals``
    named, and whether the build is valid."""
    run = run_measured([sys.executable, "-c", CLI, "compile", str(path), "-o", str(out)], timeout)
    record: dict[str, Any] = {"compile_rc": run["rc"], "compile_seconds": run["seconds"],
                              "compile_peak_rss_mib": run["peak_rss_mib"], "compile_timed_out": run["timed_out"]}
    if run["rc"] != 0:
        record["error"] = first_error(run["stderr"]) or f"timed out after {timeout:.0f} s"
        return record
    report = json.loads((out / "report.json").read_text())["totals"]
    record.update({k: report[k] for k in totals})
    check = run_measured([sys.executable, "-c", CLI, "validate", str(out)], timeout)
    record.update(valid=check["rc"] == 0, validate_seconds=check["seconds"])
    return record


def machine() -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def _fmt_int(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else "—"


def table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | exporter | opset | ONNX ops | params | cimc | bitlines | macros | usage | compile s "
             "| peak RSS MiB |", "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in records:
        if not r.get("exported"):
            lines.append(f"| {r['model']} | {r['exporter']} | — | export failed: {r.get('export_error', '')} "
                         f"| {_fmt_int(r.get('params'))} | — | — | — | — | — | — |")
            continue
        if r["compile_rc"] == 0:
            status = "compiled" + (", valid" if r.get("valid") else ", **validate failed**")
            usage = f"{100 * r['macro_usage']:.1f}%"
        else:
            cause = (", ".join(r["unsupported_ops"]) + " unsupported" if r.get("unsupported_ops")
                     else r.get("error", "").replace("|", "/"))
            status = f"exit {r['compile_rc']}: {cause}"
            usage = "—"
        lines.append(f"| {r['model']} | {r['exporter']} | {r['opset']} | {', '.join(r['ops'])} | "
                     f"{_fmt_int(r['params'])} | {status} | {_fmt_int(r.get('bitlines'))} | "
                     f"{_fmt_int(r.get('macros'))} | {usage} | {r['compile_seconds']:.1f} | "
                     f"{r['compile_peak_rss_mib']:.0f} |")
    return lines


def ranking(records: list[dict[str, Any]]) -> list[str]:
    blocked: Counter[str] = Counter()
    where: dict[str, list[str]] = {}
    for r in records:
        for op in r.get("unsupported_ops", []):
            blocked[op] += 1
            where.setdefault(op, []).append(f"{r['model']} ({r['exporter']})")
    if not blocked:
        return ["None: every export compiles."]
    lines = ["| unsupported op | exports blocked | where |", "|---|---:|---|"]
    lines += [f"| {op} | {n} | {', '.join(where[op])} |" for op, n in blocked.most_common()]
    return lines


def render() -> str:
    parts = ["# Real models through cimc", "",
             "Generated by `python3 scripts/real_models.py [--small]` (architectures: `tests/models/`, exports: "
             "`tests/models/export.py`). Each architecture is exported with torch's default (dynamo) exporter, "
             "`torch.onnx.export(model, (x,), path)`, and with `dynamo=False`, both at the opset they choose, "
             "then compiled with `cimc compile model.onnx` (default options: paper macro, synthetic calibration) "
             "in a subprocess; a build is then checked with `cimc validate`. Compile time is the process's wall "
             "time, peak RSS its `ru_maxrss`. Bit-exactness of the emulator against onnxruntime on "
             "`model.cim.onnx` is tested in `tests/test_real_models.py`.", "",
             "Both exporters fold an eval-mode BatchNormalization into the Conv before it by default (only "
             "DenseNet's pre-activation BNs, which follow a Concat, reach cimc); the legacy exporter writes "
             "`adaptive_avg_pool2d` as GlobalAveragePool but `x.mean([2, 3])` (ShuffleNetV2) as ReduceMean, the "
             "dynamo exporter writes both as ReduceMean. With the exporter's optimizer off (dynamo "
             "`optimize=False`, to keep BN) its shape helpers CastLike and Expand also stay in the file.", ""]
    for suffix, title in (("", "Full size (224×224, 1000 classes; UNets 2 classes, RetinaNet 91)"),
                          ("_small", "Small variants (the default tests' models)")):
        path = RESULTS / f"real_models{suffix}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        m = data["machine"]
        parts += [f"## {title}", "",
                  f"{m['cpu']}, {m['cores']} cores (shared; load average {m['load_average'][0]} at the start), "
                  f"Python {m['python']}, torch {m['torch']}, onnx {m['onnx']}, onnxruntime {m['onnxruntime']}; "
                  f"compile timeout {data['timeout']:.0f} s.", "", *table(data["records"]), "",
                  "Unsupported ops, ranked by the exports they block:", "", *ranking(data["records"]), ""]
    return "\n".join(parts)


def merged(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with each (model, exporter) row of ``new`` put in its place (or appended), in ``old``'s order."""
    fresh = {(r["model"], r["exporter"]): r for r in new}
    rows = [fresh.pop((r["model"], r["exporter"]), r) for r in old]
    return rows + list(fresh.values())


def main(argv: list[str] | None = None) -> int:
    from tests.models import REGISTRY
    from tests.models.export import EXPORTERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the small variants instead of the full networks")
    parser.add_argument("--only", action="append", choices=sorted(REGISTRY), help="only this architecture")
    parser.add_argument("--exporter", action="append", choices=EXPORTERS, help="only this exporter")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per cimc command (default 900)")
    parser.add_argument("--render-only", action="store_true", help="only rewrite the markdown from the JSON files")
    args = parser.parse_args(argv)
    if not args.render_only:
        import torch

        torch.set_num_threads(1)
        records = []
        info = machine()
        with tempfile.TemporaryDirectory(prefix="cimc-real-models-") as tmp:
            for name in args.only or REGISTRY:
                for exporter in args.exporter or EXPORTERS:
                    record = measure(name, exporter, args.small, Path(tmp), args.timeout)
                    records.append(record)
                    status = "compiled" if record.get("compile_rc") == 0 else record.get("error",
                                                                                         record.get("export_error"))
                    print(f"{name:22s} {exporter:7s} {status}", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"real_models{'_small' if args.small else ''}.json"
        if (args.only or args.exporter) and out.exists():  # a partial run replaces only its own rows
            records = merged(json.loads(out.read_text())["records"], records)
        out.write_text(json.dumps({"machine": info, "timeout": args.timeout, "records": records}, indent=1) + "\n")
    (RESULTS / "real_models.md").write_text(render())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
