"""Evidence for the onnx package's legacy ONNX-zoo models: each ``onnx/backend/test/data/light/*.onnx``
through ``cimc compile`` with default settings, then ``cimc validate``.

    python3 scripts/light_models.py                    # all nine (VGG19 takes minutes and GBs)
    python3 scripts/light_models.py --only light_vgg19 --timeout 1200

Each compile runs as a subprocess; its wall time and peak RSS come from the launcher of
``scripts/real_models.py``. Results: ``benchmarks/results/light_models.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import onnx

from scripts.real_models import RESULTS, compile_and_validate

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def measure(path: Path, folder: Path, timeout: float) -> dict[str, Any]:
    """Compile ``path`` with default options, validate the build; the figures of both."""
    model = onnx.load(str(path))
    weights = sum(int(n.op_type == "ConstantOfShape") for n in model.graph.node)
    record: dict[str, Any] = {"model": path.stem, "opset": max(o.version for o in model.opset_import),
                              "nodes": len(model.graph.node), "ops": sorted({n.op_type for n in model.graph.node}),
                              "constant_of_shape_weights": weights, "onnx_kib": round(path.stat().st_size / 1024, 1)}
    record.update(compile_and_validate(path, folder / f"{path.stem}.build", timeout,
                                       ("params", "bitlines", "macros", "macro_usage")))
    return record


def table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | opset | nodes | CIM (Conv) params | cimc | bitlines | macros | usage | compile s "
             "| peak RSS MiB |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in records:
        if r["compile_rc"] == 0:
            status = "compiled" + (", valid" if r.get("valid") else ", **validate failed**")
            usage = f"{100 * r['macro_usage']:.1f}%"
            figures = f"{r['params']:,} | {status} | {r['bitlines']:,} | {r['macros']:,} | {usage}"
        else:
            figures = f"— | exit {r['compile_rc']}: {r.get('error', '')} | — | — | —"
        lines.append(f"| {r['model']} | {r['opset']} | {r['nodes']} | {figures} | {r['compile_seconds']:.1f} "
                     f"| {r['compile_peak_rss_mib']:,.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], help="model name (repeatable)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per command")
    args = parser.parse_args()
    paths = sorted(p for p in LIGHT.glob("light_*.onnx") if not args.only or p.stem in args.only)
    records = []
    with tempfile.TemporaryDirectory(prefix="cimc-light-") as tmp:
        for path in paths:
            records.append(measure(path, Path(tmp), args.timeout))
            print(table(records)[-1], flush=True)
    load = [round(v, 2) for v in os.getloadavg()]
    doc = {"machine": {"python": platform.python_version(), "onnx": onnx.__version__, "cores": os.cpu_count(),
                       "load_average_after": load}, "records": records}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "light_models.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    text = ["# The onnx package's light models through `cimc compile` (default settings)", "",
            f"`python3 scripts/light_models.py`; onnx {onnx.__version__}, Python {platform.python_version()}, "
            f"{os.cpu_count()} cores (load average {load[0]} after the run: timings on a shared machine).", "",
            "Weights are the models' own `ConstantOfShape` fills (0.02 everywhere), folded at import within the "
            "default tensor budget (`--max-tensor-bytes`, 1 GiB).", "", *table(records), ""]
    (RESULTS / "light_models.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
