"""``cimc export-qdq BUILD -o m.qdq.onnx``: the compiled model as standard QDQ ONNX
(``cimc.lowering.qdq``): input (DAC) and partial-sum (ADC) quantization as
QuantizeLinear/DequantizeLinear on explicit tensors, the cells as int4 (opset ≥ 21) or int8
codes; onnxruntime gives the same outputs as the build's ``model.cim.onnx`` bit for bit.

    cimc export-qdq build/ -o model.qdq.onnx             # opset 21
    cimc export-qdq build/ -o model.qdq.onnx --opset 17  # int8 codes only (opsets 17..23)
    cimc export-qdq build/ -o model.qdq.onnx --scales real  # per-axis S_W on the int4 weights
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cimc.cli.common import State, echo, guarded
from cimc.errors import UsageError


@click.command("export-qdq")
@click.argument("build", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The QDQ ONNX file to write.")
@click.option("--opset", type=click.IntRange(17, 23), default=21, show_default=True,
              help="ONNX opset: 21 or later allows int4/uint4 and 16-bit codes.")
@click.option("--scales", type=click.Choice(["codes", "real"]), default="codes", show_default=True,
              help="codes: dequantize to codes, S_W in the output scale (bit for bit); real: S_A, per-axis S_W "
                   "on the weights, S_ADC·S_W·S_A on the partial sums (unsliced layers; ADC codes may differ by 1 "
                   "at ties).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.pass_obj
@guarded
def export_qdq_cmd(state: State, build: Path, output: Path, opset: int, scales: str, force: bool) -> None:
    """Write BUILD's compiled model as QDQ ONNX (the same outputs as model.cim.onnx)."""
    from cimc.lowering.qdq import qdq_model, read_cim_model, read_weight_steps
    from cimc.progress import Progress

    if (output.exists() or output.is_symlink()) and not force:
        raise UsageError(f"{output} exists", hint="pass --force to replace it")
    with Progress(enabled=not state.as_json) as progress:
        progress.phase(f"reading {build}")
        cim, steps = read_cim_model(build), read_weight_steps(build) if scales == "real" else None
        progress.phase(f"QDQ rewrite (opset {opset})")
        model = qdq_model(cim, opset, steps)
        data = model.SerializeToString(deterministic=True)
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    counts = {op: sum(n.op_type == op for n in model.graph.node) for op in ("QuantizeLinear", "DequantizeLinear")}
    result = {"output": str(output), "opset": opset, "scales": scales, "bytes": len(data), **counts}
    if state.as_json:
        echo(json.dumps(result, sort_keys=True))
        return
    echo(f"wrote {output} (opset {opset}, {len(data):,} bytes): {counts['QuantizeLinear']} QuantizeLinear, "
               f"{counts['DequantizeLinear']} DequantizeLinear")
