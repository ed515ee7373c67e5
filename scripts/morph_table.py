"""Print the README's structure-only morph table: zoo VGG9 / VGG16 / ResNet18 at 512, 1,024,
4,096 and 8,192 bitlines, macro usage measured by the compile path's cost model next to the
paper's Tables III–V.

    python scripts/morph_table.py            # all three models, about 10 s
    python scripts/morph_table.py vgg9       # one model
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cimc.models as models
from cimc.frontend import import_onnx
from cimc.ir.graph import Graph
from cimc.morph.paper import PAPER, markdown, usage_rows


def zoo_graph(name: str) -> Graph:
    """The zoo model (seed 0) as cimc imports it, BatchNormalization kept."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        models.export_onnx(name, path)
        return import_onnx(path)


def main(names: list[str]) -> int:
    start = time.perf_counter()
    rows = usage_rows({name: zoo_graph(name) for name in names or list(PAPER)})
    print(markdown(rows))
    failed = [r for r in rows if not r.fits or r.usage < r.paper_usage]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} within budget and at or above the paper's usage "
          f"({time.perf_counter() - start:.1f} s; morph {sum(r.seconds for r in rows):.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
