"""The Python API: ``compile_model`` runs the pipeline and writes a build directory.

    result = compile_model("vgg9", "build/", bitline_budget=4096)
    result.cost.bitlines  # 38592

``source`` is an ONNX file path or a zoo model name (``cimc.models.available()``). The
pipeline is ``cimc.passes.pipelines.DEFAULT`` (after ``MORPH`` with a morph; with ``EQUALIZE``
after fold-batchnorm with ``equalize``), changed by
``CompileOptions.passes``/``disable``/``stop_after``; each pass is built from the options
(``GraphPass.from_options``).

From Python, ``calib`` and ``eval_data`` also take data: a numpy array of inputs (``calib``),
a ``Dataset``, or any iterable of ``(x, y)`` batches such as a torch ``DataLoader``
(``cimc.data.batches``); calibration batches are read once, and the manifest records
``calib = "python"``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cimc.backend.macro import build_files
from cimc.backend.quant_part import quant_info
from cimc.build.directory import check_target, write_build
from cimc.cost.model import ModelCost
from cimc.data.batches import inputs_of
from cimc.data.files import data_limit
from cimc.data.preprocess import Preprocess
from cimc.errors import CimcError, UsageError
from cimc.evaluation import evaluator
from cimc.frontend import import_onnx
from cimc.frontend.budget import check_nonempty
from cimc.ir.graph import Graph
from cimc.limits import memory_budget
from cimc.macro import MacroSpec, load_macro
from cimc.options import OPTIONS, recorded, validate_bits
from cimc.passes import pipelines
from cimc.passes.manager import PassContext, PassRecord, run_passes
from cimc.passes.pipelines import DEFAULT, MORPH, Pipeline, check_buildable, instantiate, select

if TYPE_CHECKING:
    from cimc.morph.planning import MorphOptions

#: The manifest's ``calib`` of data given from Python (an array or batches, not a name or path).
PYTHON_DATA = "python"


@dataclass
class CompileOptions:
    """Everything ``cimc compile`` can be told; defaults reproduce the paper's setup. The fields
    named in ``cimc.options`` take their meaning, default and allowed values from there; they
    are checked on construction (a ``UsageError`` for a refused value)."""

    bitline_budget: int | None = None
    macro: MacroSpec | str | Path | None = None
    timing: str = OPTIONS["timing"].default
    infer_batch: int = OPTIONS["infer_batch"].default
    conversion: str = OPTIONS["conversion"].default
    tiling: str = OPTIONS["tiling"].default
    placement: str = OPTIONS["placement"].default
    map_fc: bool = OPTIONS["map_fc"].default
    input_shapes: dict[str, tuple[int, ...]] | None = None
    max_model_bytes: int = OPTIONS["max_model_bytes"].default
    max_tensor_bytes: int = OPTIONS["max_tensor_bytes"].default
    max_data_bytes: int = OPTIONS["max_data_bytes"].default
    dump_ir: Path | None = None
    force: bool = False
    allow_external_data_outside: bool = False
    granularity: str = OPTIONS["granularity"].default
    weight_method: str = OPTIONS["weight_method"].default
    adc_method: str = OPTIONS["adc_method"].default
    bias_correction: bool = OPTIONS["bias_correction"].default
    adaround: bool = OPTIONS["adaround"].default
    weight_digits: str = OPTIONS["weight_digits"].default
    equalize: bool = OPTIONS["equalize"].default
    calib: str | Any = OPTIONS["calib"].default  # from Python also an array or an iterable of (x, y) batches
    calib_size: int = OPTIONS["calib_size"].default
    no_shift: bool = OPTIONS["no_shift"].default
    w_bits: int | None = None
    a_bits: int | None = None
    adc_bits: int | None = None
    layer_bits: dict[str, dict[str, int]] | None = None
    weight_pool: int | None = None
    pool_vector: int | None = None
    pool_error_bits: int | None = None
    pool_error_prune: float | None = None
    eval_data: str | Any | None = None  # from Python also a Dataset or an iterable of (x, y) batches
    eval_size: int | None = None
    max_acc_drop: float = OPTIONS["max_acc_drop"].default
    data_root: str | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | str | None = None  # text "0.5,0.5,0.5" is parsed on construction
    std: tuple[float, ...] | str | None = None
    morph: MorphOptions | None = None  # structure-only morph before fold-batchnorm (cimc.morph.structure)
    passes: tuple[str, ...] | None = None  # instead of the base pipeline
    disable: tuple[str, ...] = ()
    stop_after: str | None = None
    progress: Callable[[str], None] | None = field(default=None, repr=False)  # told each phase (cimc.progress)

    def __post_init__(self) -> None:
        for o in OPTIONS.values():
            if o.kind in (int, float, bool) or o.choices:
                o.validate(getattr(self, o.name))
        pre = self.preprocess()  # checks image_size, mean and std
        if isinstance(self.calib, Path):
            self.calib = str(self.calib)
        elif not isinstance(self.calib, str):  # read once: a generator cannot be read by both passes
            self.calib = inputs_of(self.calib, self.calib_size)
        self.mean, self.std = pre.mean, pre.std
        for layer, entry in (self.layer_bits or {}).items():
            validate_bits(entry, f"bits of layer '{layer}'")
        if "scale-to-shift" in self.disable:  # --disable scale-to-shift is --no-shift: the same build
            self.no_shift = True

    def preprocess(self) -> Preprocess:
        """The image preprocessing of calibration and evaluation (``cimc.data.preprocess``)."""
        return Preprocess.from_options(self.image_size, self.mean, self.std)

    def pipeline(self, stop: bool = True) -> Pipeline:
        """The pass names to run (``stop=False``: before ``stop_after`` cuts them)."""
        if self.morph is not None or MORPH[0] in (*(self.passes or ()), *self.disable, self.stop_after):
            import cimc.morph.channels_pass  # noqa: F401  (registers morph-channels; numpy-heavy, so only now)
        if self.equalize and self.passes and pipelines.EQUALIZE[0] not in self.passes:
            name = pipelines.EQUALIZE[0]
            raise UsageError(f"--equalize runs the '{name}' pass, which --passes leaves out",
                             hint=f"list '{name}' in --passes (after fold-batchnorm), or drop --equalize")
        return select(self._base(), self.passes, self._disabled(), self.stop_after if stop else None)

    def public(self) -> dict[str, Any]:
        """The options that shape the build (recorded in the manifest): the ``recorded``
        declarations of ``cimc.options`` (``None`` left out, an absent mapping as ``{}``), the
        morph, and ``passes`` when the pipeline differs from the default one."""
        doc = {o.name: _record({} if o.kind is dict and value is None else value)
               for o in recorded() if ((value := getattr(self, o.name)) is not None or o.kind is dict)
               and (o.record_default or value != o.default)}
        if not isinstance(self.calib, str):
            doc["calib"] = PYTHON_DATA
        if self.morph is not None:
            doc["morph"] = _morph().morph_record(self.morph)
        names = self.pipeline()
        if names != select(self._base(), None, self._shift_off(self._base())):
            doc["passes"] = list(names)
        return doc

    def _base(self) -> Pipeline:
        base = (*MORPH, *DEFAULT) if self.morph is not None else DEFAULT
        base = pipelines.pooled(base) if self.weight_pool is not None else base
        return pipelines.with_equalize(base) if self.equalize else base

    def _shift_off(self, names: Pipeline) -> tuple[str, ...]:
        """``--no-shift``: scale-to-shift disabled (where the pipeline has it)."""
        return ("scale-to-shift",) if self.no_shift and "scale-to-shift" in names else ()

    def _disabled(self) -> tuple[str, ...]:
        names = tuple(self.passes) if self.passes else self._base()
        return tuple(dict.fromkeys((*self.disable, *self._shift_off(names))))


def _record(value: Any) -> Any:
    """``value`` as the manifest's JSON: mappings sorted by key, tuples as lists."""
    if isinstance(value, dict):
        return {k: _record(v) for k, v in sorted(value.items())}
    if isinstance(value, tuple | list):
        return [_record(v) for v in value]
    return value


@dataclass(frozen=True)
class CompileResult:
    out_dir: Path
    graph: Graph
    cost: ModelCost
    report: dict[str, Any]
    history: list[PassRecord]


def load_source(source: str | Path, options: CompileOptions) -> tuple[Graph, dict[str, Any]]:
    """Import an ONNX file, or export the zoo model of that name first."""
    path = Path(source)
    if path.is_file():
        with ThreadPoolExecutor(max_workers=1) as pool:  # hashing releases the GIL: it overlaps the import
            data = pool.submit(_read_hash, path, options.max_model_bytes)  # bounded: no hang on huge files
            graph = import_onnx(path, input_shapes=options.input_shapes, max_bytes=options.max_model_bytes,
                                allow_external_outside=options.allow_external_data_outside,
                                max_tensor_bytes=options.max_tensor_bytes)
        return graph, {"kind": "onnx", "name": path.name, "sha256": data.result()}
    import cimc.models as models

    if str(source) not in models.available():
        raise UsageError(f"'{source}' is neither an ONNX file nor a zoo model",
                         hint=f"zoo models: {', '.join(models.available())}")
    with models.onnx_file(str(source)) as onnx_path:  # the shipped or cached file in place, no copy
        graph = import_onnx(onnx_path, input_shapes=options.input_shapes, max_bytes=options.max_model_bytes,
                            max_tensor_bytes=options.max_tensor_bytes)
        digest = _read_hash(onnx_path)
    graph.name = str(source)
    return graph, {"kind": "zoo", "name": str(source), "sha256": digest}


def _read_hash(path: Path, limit: int | None = None) -> str:
    """sha256 of the file; reading stops after ``limit`` bytes (the import refuses such a file)."""
    from cimc.untrusted import check_regular

    try:  # the checks of every read (cimc.untrusted); the import reports a refusal itself
        check_regular(path, limit=limit if limit is not None else 2**63)
    except CimcError:
        return ""
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
    """Run ``options.pipeline()`` on ``graph``; a ``UsageError`` before any pass runs when the
    pipeline leaves CIM layers unplaced (no build or cost could be made of it)."""
    check_nonempty(graph)  # empty tensors import (and interpret) fine, but cannot be compiled
    names = options.pipeline()
    check_buildable(names, options.pipeline(stop=False))
    passes = instantiate(names, options)
    macro = options.macro if isinstance(options.macro, MacroSpec) else load_macro(options.macro)
    say = options.progress
    ctx = PassContext(macro=macro, bitline_budget=options.bitline_budget, dump_dir=options.dump_ir,
                      progress=None if say is None else lambda name: say(f"pass {name}"),
                      memory_budget=memory_budget(options.max_tensor_bytes))
    return run_passes(graph, passes, ctx), ctx


def _told(fn: Callable[..., Any], say: Callable[[str], None], phase: str) -> Callable[..., Any]:
    """``fn`` that first tells ``say`` it is in ``phase``."""
    def told(*args: Any) -> Any:
        say(phase)
        return fn(*args)
    return told


def _morph() -> Any:
    """``cimc.morph.planning``, imported only when a morph is asked for (start-up time)."""
    import cimc.morph.planning as planning

    return planning


def compile_model(source: str | Path, out_dir: str | Path, options: CompileOptions | None = None,
                  **overrides: Any) -> CompileResult:
    """Import, run the default pipeline, and write the build directory atomically."""
    options = options or CompileOptions(**overrides)
    out = Path(out_dir)
    check_target(out, options.force)
    say = options.progress or (lambda _: None)
    say(f"importing {Path(source).name}")
    graph, source_info = load_source(source, options)
    with data_limit(options.max_data_bytes):  # --calib and --eval files
        evaluate = None
        if options.eval_data is not None:
            say("loading the eval data" + (f" ({options.eval_data})" if isinstance(options.eval_data, str) else ""))
            evaluate = _told(evaluator(graph, options.eval_data, options.eval_size, options.data_root,
                                       options.preprocess(), options.max_acc_drop,
                                       memory_budget=memory_budget(options.max_tensor_bytes)),
                             say, "accuracy of model.cim.onnx")
        graph, ctx = compile_graph(graph, options)
        say("build files (cost, timeline, layout, model.cim.onnx, reports)")
        build = build_files(graph, ctx.macro, options.bitline_budget, source_info, options.public(),
                            quant_info(ctx), evaluate, options.timing, options.infer_batch,
                            options.conversion)
    say(f"writing {out}")
    write_build(out, build.files, build.manifest, force=options.force)
    return CompileResult(out, graph, build.cost, build.report.to_json(), ctx.history)
