"""The Python API: ``compile_model`` runs the default pipeline and writes a build directory.

    result = compile_model("vgg9", "build/", bitline_budget=4096)
    result.cost.bitlines  # 38592

``source`` is an ONNX file path or a zoo model name (``cimc.models.available()``).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cimc.backends.build_dir import check_target, write_build
from cimc.backends.cost_model import ModelCost
from cimc.backends.macro_backend import build_files
from cimc.errors import UsageError
from cimc.frontend import import_onnx
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec, load_macro
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.pipeline import GraphPass, PassContext, PassRecord, run_passes

DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3


@dataclass
class CompileOptions:
    """Everything ``cimc compile`` can be told; defaults reproduce the paper's setup."""

    bitline_budget: int | None = None
    macro: MacroSpec | str | Path | None = None
    tiling: str = "channel"
    placement: str = "packed"
    map_fc: bool = False
    input_shapes: dict[str, tuple[int, ...]] | None = None
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES
    dump_ir: Path | None = None
    force: bool = False
    progress: Callable[[str], None] | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """The options that shape the build (recorded in the manifest)."""
        return {"tiling": self.tiling, "placement": self.placement, "map_fc": self.map_fc,
                "input_shapes": {k: list(v) for k, v in sorted((self.input_shapes or {}).items())}}


@dataclass(frozen=True)
class CompileResult:
    out_dir: Path
    graph: Graph
    cost: ModelCost
    report: dict[str, Any]
    history: list[PassRecord]


def default_passes(options: CompileOptions) -> list[GraphPass]:
    return [FoldBatchNorm(), SelectCim(map_fc=options.map_fc), TileWordlines(mode=options.tiling),
            PlaceBitlines(policy=options.placement)]


def load_source(source: str | Path, options: CompileOptions) -> tuple[Graph, dict[str, Any]]:
    """Import an ONNX file, or export the zoo model of that name first."""
    path = Path(source)
    if path.is_file():
        data = _read_hash(path)
        graph = import_onnx(path, input_shapes=options.input_shapes, max_bytes=options.max_model_bytes)
        return graph, {"kind": "onnx", "name": path.name, "sha256": data}
    import cimc.models as models

    if str(source) not in models.available():
        raise UsageError(f"'{source}' is neither an ONNX file nor a zoo model",
                         hint=f"zoo models: {', '.join(models.available())}")
    with tempfile.TemporaryDirectory(prefix="cimc-zoo-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        models.export_onnx(str(source), onnx_path)
        graph = import_onnx(onnx_path, input_shapes=options.input_shapes, max_bytes=options.max_model_bytes)
        digest = _read_hash(onnx_path)
    graph.name = str(source)
    return graph, {"kind": "zoo", "name": str(source), "sha256": digest}


def _read_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def compile_graph(graph: Graph, options: CompileOptions) -> tuple[Graph, PassContext]:
    macro = options.macro if isinstance(options.macro, MacroSpec) else load_macro(options.macro)
    ctx = PassContext(macro=macro, bitline_budget=options.bitline_budget, dump_dir=options.dump_ir,
                      progress=options.progress)
    return run_passes(graph, default_passes(options), ctx), ctx


def compile_model(source: str | Path, out_dir: str | Path, options: CompileOptions | None = None,
                  **overrides: Any) -> CompileResult:
    """Import, run the default pipeline, and write the build directory atomically."""
    options = options or CompileOptions(**overrides)
    out = Path(out_dir)
    check_target(out, options.force)
    graph, source_info = load_source(source, options)
    graph, ctx = compile_graph(graph, options)
    build = build_files(graph, ctx.macro, options.bitline_budget, source_info, options.public())
    write_build(out, build.files, build.manifest, force=options.force)
    return CompileResult(out, graph, build.cost, build.report, ctx.history)
