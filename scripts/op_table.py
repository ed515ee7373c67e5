"""The README's table of supported ONNX ops, generated from the op table (``cimc.ops``).

    python3 scripts/op_table.py            # print the table
    python3 scripts/op_table.py --update   # rewrite the block between the README's markers

``tests/test_readme_ops.py`` fails when the README's block differs from what this prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cimc.ops import IDENTITY_OPS, op_table
from cimc.ops.base import CONCERNS, OpDef, Unsupported

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- ops:begin -->", "<!-- ops:end -->"
CIM_OPS = {"Conv": "CIM (every Conv with constant weights)", "Gemm": "CIM with `--map-fc`, else digital",
           "MatMul": "CIM with `--map-fc`, else digital",
           "BatchNormalization": "folded into the Conv or Gemm before it (fold-batchnorm), else digital"}
#: What an op's ``replace`` hook does at import, for the ops that have one.
REWRITES = {"ReduceMean": "over H,W of a 4-D input: GlobalAveragePool (+ Flatten without keepdims)",
            "Split": "one Slice per output that is read",
            "Gather": "indices 0, 1, …, d−1 in order: Reshape",
            "CastLike": "a Cast to float32 (of a constant: folded)",
"ConvTranspose": "a Conv (CIM) between digital data movement: sub-pixel (conv with M·s² outputs, "
                             "pixel shuffle) without dilation, else zero insertion",
            "Upsample": "opset 7/9: Resize with asymmetric coordinates (opset upgrade)",
            "Conv": "1-D: the 2-D conv over (N, C, 1, L) between Reshapes",
            "MaxPool": "1-D: the 2-D pool over (N, C, 1, L) between Reshapes",
            "AveragePool": "1-D: the 2-D pool over (N, C, 1, L) between Reshapes"}


def _where(op: OpDef) -> str:
    """Where the op runs, and what the import rewrites it to (``REWRITES``, a test keeps it whole)."""
    rewrite = f"; {REWRITES[op.name]}" if op.name in REWRITES else ""
    if all(isinstance(getattr(op, c), Unsupported) for c in CONCERNS):
        return f"rewritten at import{rewrite}"
    written = "; written as basic ONNX ops where opset 17 or onnxruntime lacks it or rounds otherwise"
    written = written if op.decompose else ""
    return CIM_OPS.get(op.name, "digital" + (", float64 rounded once" if op.double else "")) + rewrite + written


def render() -> str:
    """The markdown table (one row per op of the table, then the ops removed at import)."""
    rows = ["| ONNX op | where it runs |", "|---|---|"]
    rows += [f"| {name} | {_where(op)} |" for name, op in op_table().items()]
    rows.append(f"| {', '.join(sorted(IDENTITY_OPS))} | removed at import (identity at inference) |")
    return "\n".join(rows) + "\n"


def update(path: Path = README) -> None:
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{render()}{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the README's block")
    if parser.parse_args().update:
        update()
    else:
        print(render(), end="")


if __name__ == "__main__":
    main()
