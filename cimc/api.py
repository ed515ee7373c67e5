"""The Python API: ``compile_model`` runs the default pipeline and writes a build directory.

    result = compile_model("vgg9", "build/", bitline_budget=4096)
    result.cost.bitlines  # 38592

``source`` is an ONNX file path or a zoo model name (``cimc.models.available()``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cimc.backend.macro import build_files
from cimc.backend.quant_part import quant_info
from cimc.build.directory import check_target, write_build
from cimc.cost.model import ModelCost
from cimc.errors import UsageError
from cimc.evaluation import evaluator
from cimc.frontend import import_onnx
from cimc.frontend.budget import check_nonempty
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec, load_macro
from cimc.passes.fold_batchnorm import FoldBatchNorm
from cimc.passes.manager import GraphPass, PassContext, PassRecord, run_passes
from cimc.passes.place_bitlines import PlaceBitlines
from cimc.passes.quantize import LayerBits, Quantize
from cimc.passes.scale_to_shift import ScaleToShift
from cimc.passes.select_cim import SelectCim
from cimc.passes.tile_wordlines import TileWordlines
from cimc.quant.calibration import DEFAULT_SIZE as DEFAULT_CALIB_SIZE

if TYPE_CHECKING:
    from cimc.morph.structure import MorphOptions

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
    allow_external_data_outside: bool = False
    granularity: str = "layer"
    weight_method: str = "mse"
    calib: str = "synthetic"
    calib_size: int = DEFAULT_CALIB_SIZE
    no_shift: bool = False
    w_bits: int | None = None
    a_bits: int | None = None
    adc_bits: int | None = None
    layer_bits: dict[str, dict[str, int]] | None = None
    eval_data: str | None = None
    eval_size: int | None = None
    data_root: str | None = None
    morph: MorphOptions | None = None  # structure-only morph before fold-batchnorm (cimc.morph.structure)
    progress: Callable[[str], None] | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """The options that shape the build (recorded in the manifest)."""
        return {"tiling": self.tiling, "placement": self.placement, "map_fc": self.map_fc,
                "input_shapes": {k: list(v) for k, v in sorted((self.input_shapes or {}).items())},
                "granularity": self.granularity, "weight_method": self.weight_method, "calib": self.calib,
                "calib_size": self.calib_size, "no_shift": self.no_shift,
                **{k: v for k, v in (("w_bits", self.w_bits), ("a_bits", self.a_bits),
                                     ("adc_bits", self.adc_bits)) if v is not None},
                "layer_bits": {k: dict(sorted(v.items())) for k, v in sorted((self.layer_bits or {}).items())},
                **({"morph": _morph().morph_record(self.morph)} if self.morph is not None else {})}


@dataclass(frozen=True)
class CompileResult:
    out_dir: Path
    graph: Graph
    cost: ModelCost
    report: dict[str, Any]
    history: list[PassRecord]


def default_passes(options: CompileOptions) -> list[GraphPass]:
    calib: dict[str, Any] = {"calib": options.calib, "calib_size": options.calib_size, "data_root": options.data_root}
    bits = {k: LayerBits(**v) for k, v in (options.layer_bits or {}).items()}
    default = LayerBits(options.w_bits, options.a_bits, options.adc_bits)
    passes: list[GraphPass] = [
        FoldBatchNorm(), SelectCim(map_fc=options.map_fc), TileWordlines(mode=options.tiling),
        Quantize(granularity=options.granularity, weight_method=options.weight_method, bits=bits,
                 default_bits=default, **calib),
        PlaceBitlines(policy=options.placement)]
    return passes if options.no_shift else [*passes, ScaleToShift(**calib)]


def load_source(source: str | Path, options: CompileOptions) -> tuple[Graph, dict[str, Any]]:
    """Import an ONNX file, or export the zoo model of that name first."""
    path = Path(source)
    if path.is_file():
        with ThreadPoolExecutor(max_workers=1) as pool:  # hashing releases the GIL: it overlaps the import
            data = pool.submit(_read_hash, path, options.max_model_bytes)  # bounded: no hang on huge files
            graph = import_onnx(path, input_shapes=options.input_shapes, max_bytes=options.max_model_bytes,
                                allow_external_outside=options.allow_external_data_outside)
        return graph, {"kind": "onnx", "name": path.name, "sha256": data.result()}
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


def _read_hash(path: Path, limit: int | None = None) -> str:
    """sha256 of the file; reading stops after ``limit`` bytes (the import refuses such a file)."""
    h = hashlib.sha256()
    read = 0
    with open(path, "rb") as fh:
        if limit is not None and os.fstat(fh.fileno()).st_size > limit:
            return ""
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            read += len(chunk)
            if limit is not None and read > limit:
                break
    return h.hexdigest()


def compile_graph(graph: Graph, options: CompileOptions) -> tuple[Graph, PassContext]:
    check_nonempty(graph)  # empty tensors import (and interpret) fine, but cannot be compiled
    macro = options.macro if isinstance(options.macro, MacroSpec) else load_macro(options.macro)
    ctx = PassContext(macro=macro, bitline_budget=options.bitline_budget, dump_dir=options.dump_ir,
                      progress=options.progress)
    morph = _morph().morph_passes(options) if options.morph is not None else []
    return run_passes(graph, morph + default_passes(options), ctx), ctx


def _morph() -> Any:
    """``cimc.morph.structure``, imported only when a morph is asked for (start-up time)."""
    import cimc.morph.structure as structure

    return structure


def compile_model(source: str | Path, out_dir: str | Path, options: CompileOptions | None = None,
                  **overrides: Any) -> CompileResult:
    """Import, run the default pipeline, and write the build directory atomically."""
    options = options or CompileOptions(**overrides)
    out = Path(out_dir)
    check_target(out, options.force)
    graph, source_info = load_source(source, options)
    evaluate = evaluator(graph, options.eval_data, options.eval_size, options.data_root) if options.eval_data else None
    graph, ctx = compile_graph(graph, options)
    build = build_files(graph, ctx.macro, options.bitline_budget, source_info, options.public(),
                        quant_info(ctx.results), evaluate)
    write_build(out, build.files, build.manifest, force=options.force)
    return CompileResult(out, graph, build.cost, build.report.to_json(), ctx.history)
