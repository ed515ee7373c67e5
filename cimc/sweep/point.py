"""Evaluate one design point: macro + options → in-memory compile → one result record.

The macro is the point's ``macro.preset`` (default ``paper``) with its ``macro.*`` fields
replaced (``MacroSpec.with_options``); layer bits, budget, tiling … become ``CompileOptions``;
``morph_lambda = λ`` adds the structure-only morph with the data-free shrink at λ
(``MorphOptions(threshold=0, align=True, cost_weight=λ, step=None)``: prune classes whose
shrunk ``|γ|`` is ≤ 0, round to whole segments, expand to the budget at exact breakpoints), or,
with ``train``, the trained loop (``cimc.sweep.trained``). ``compile_graph`` runs the default
pipeline; ``model_cost`` gives the figures (no build folder unless ``keep_builds``).

Latency, in cycles of one inference starting with unloaded macros (paper Section II.A):
``latency_cycles = loading_cycles + computing_cycles`` (both recorded; when the model does not
fit the budget ``reload_cycles_per_inference`` says what every later inference pays again).
From the timeline at the point's ``infer_batch``, ``timing`` and ``conversion`` (axes like the
others): ``cycles_per_inference``, ``energy_pj`` and ``edp`` (``cimc.cost.objective``).
Accuracy (with ``eval``): top-1 of the float graph and of ``model.cim.onnx`` in onnxruntime on
the same test samples (``cimc.evaluation``). A point that cimc refuses (a ``CimcError``: the
design is infeasible, the bits unsupported …) is recorded as ``status = "error"`` with the
error's kind and message; any other exception is a bug in cimc, recorded as ``status = "bug"``
with its traceback (at most ``TRACEBACK_CHARS``) and logged as an error. The sweep goes on
either way, but ``cimc sweep`` exits non-zero when a point hit a bug, and resumes rerun them.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimc import __version__
from cimc.errors import CimcError
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec, load_macro
from cimc.sweep.config import COMPILE_AXES
from cimc.sweep.model import ModelBlob, imported

log = logging.getLogger(__name__)
COST_FIELDS = ("params", "bitlines", "segments", "adc_conversions", "macros", "macro_usage", "computing_cycles",
               "loading_cycles", "reload_cycles_per_inference", "bitline_budget", "fits_on_chip",
               "min_budget_without_reload")
_EVALUATORS: dict[tuple[Any, ...], Any] = {}
TRACEBACK_CHARS = 8000


@dataclass(frozen=True)
class Task:
    key: str
    point: dict[str, Any]
    settings: dict[str, Any]
    data_root: str | None = None
    keep_builds: str | None = None


def point_macro(point: dict[str, Any]) -> MacroSpec:
    base = load_macro(point.get("macro.preset", "paper"))
    fields = {k.removeprefix("macro."): v for k, v in point.items() if k.startswith("macro.") and k != "macro.preset"}
    return base.with_options(**fields)


def preprocess_options(settings: dict[str, Any]) -> dict[str, Any]:
    """The image preprocessing the sweep config gives (``image_size``, ``mean``, ``std``), as
    ``CompileOptions`` fields."""
    return {k: tuple(v) if isinstance(v, list) else v for k in ("image_size", "mean", "std")
            if (v := settings.get(k)) is not None}


def compile_options(point: dict[str, Any], settings: dict[str, Any], macro: MacroSpec, data_root: str | None) -> Any:
    from cimc.api import CompileOptions

    options = CompileOptions(macro=macro, calib=settings["calib"], calib_size=settings["calib_size"],
                             eval_data=settings["eval"], eval_size=settings["eval_size"], data_root=data_root,
                             **preprocess_options(settings),
                             **{k: point[k] for k in COMPILE_AXES if k in point})
    if "morph_lambda" in point and not settings["train"]:
        from cimc.morph.planning import MorphOptions

        options.morph = MorphOptions.usage_search(search=0, cost_weight=float(point["morph_lambda"]))
    return options


def evaluate_point(blob: ModelBlob, task: Task) -> dict[str, Any]:
    """The task's record (module docstring); never raises for a failing point."""
    start = time.perf_counter()
    record: dict[str, Any] = {"key": task.key, "point": task.point, "model": blob.identity(),
                              "cimc_version": __version__}
    try:
        record.update(status="ok", **_figures(blob, task))
    except CimcError as exc:
        record.update(status="error", error={"kind": exc.kind, "message": str(exc)})
    except Exception as exc:  # a bug: the other points still run, but it is recorded as one and surfaces
        log.error("point %s: internal error (a bug in cimc)", task.key, exc_info=True)
        record.update(status="bug", error={"kind": "internal", "message": f"{type(exc).__name__}: {exc}",
                                           "traceback": traceback.format_exc()[-TRACEBACK_CHARS:]})
    record["wall_s"] = round(time.perf_counter() - start, 4)
    return record


def _figures(blob: ModelBlob, task: Task) -> dict[str, Any]:
    from cimc.api import compile_graph

    point, settings = task.point, task.settings
    macro = point_macro(point)
    options = compile_options(point, settings, macro, task.data_root)
    graph, extra = _source(blob, task, macro, options)
    compiled, ctx = compile_graph(graph, options)
    if task.keep_builds:
        cost, accuracy = _keep(blob, task, graph, compiled, ctx, options)
    else:
        from cimc.cost.model import model_cost

        cost = model_cost(compiled, ctx.macro, options.bitline_budget)
        accuracy = _accuracy(blob, task, graph, compiled, trained=bool(extra))
    figures = {name: getattr(cost, name) for name in COST_FIELDS}
    figures["latency_cycles"] = cost.loading_cycles + cost.computing_cycles
    return {**figures, **_timeline_fields(compiled, ctx.macro, cost, options), **_accuracy_fields(accuracy), **extra}


def _timeline_fields(compiled: Graph, macro: MacroSpec, cost: Any, options: Any) -> dict[str, float]:
    """The timeline's objectives (``cimc.cost.objective``) at the point's batch, timing and conversion."""
    from cimc.cost.objective import timeline_figures
    from cimc.cost.timeline import timeline

    result = timeline(compiled, macro, cost.bitline_budget, options.timing, options.infer_batch, options.conversion)
    return timeline_figures(result, macro)


def _source(blob: ModelBlob, task: Task, macro: MacroSpec, options: Any) -> tuple[Graph, dict[str, Any]]:
    """The graph to compile: the model, seed-trained and trained-morphed on the trained path."""
    graph = imported(blob)
    if not task.settings["train"]:
        return graph, {}
    from cimc.sweep import trained

    training = task.settings["training"]
    graph = trained.seeded(graph, blob.sha256, training, task.data_root)
    if "morph_lambda" not in task.point:
        return graph, {"trained": True}
    graph, info = trained.morphed(graph, macro, options.bitline_budget, float(task.point["morph_lambda"]),
                                  task.point, training, task.data_root)
    return graph, {"trained": True, "morph": info}


def _accuracy(blob: ModelBlob, task: Task, graph: Graph, compiled: Graph, trained: bool) -> dict[str, Any] | None:
    settings = task.settings
    if not settings["eval"]:
        return None
    from cimc.data.preprocess import Preprocess
    from cimc.evaluation import evaluator
    from cimc.lowering.model import cim_model_bytes

    pre = Preprocess.from_options(**preprocess_options(settings))
    key = (blob.sha256, settings["eval"], settings["eval_size"], task.data_root, pre)
    evaluate = _EVALUATORS.get(key) if not trained else None
    if evaluate is None:
        evaluate = evaluator(graph, settings["eval"], settings["eval_size"], task.data_root, pre)
        if not trained:
            _EVALUATORS[key] = evaluate
    return evaluate(cim_model_bytes(compiled)).to_json()


def _accuracy_fields(accuracy: dict[str, Any] | None) -> dict[str, Any]:
    names = ("float_top1", "compiled_top1", "agreement")
    return {n: (accuracy or {}).get(n) for n in names} | {"eval_samples": (accuracy or {}).get("samples")}


def _keep(blob: ModelBlob, task: Task, graph: Graph, compiled: Graph, ctx: Any, options: Any) -> tuple[Any, Any]:
    """Write the point's build folder ``KEEP/<key[:16]>`` (as ``cimc compile`` would)."""
    from cimc.backend.macro import build_files
    from cimc.backend.quant_part import quant_info
    from cimc.build.directory import write_build
    from cimc.evaluation import evaluator

    evaluate = (evaluator(graph, options.eval_data, options.eval_size, options.data_root, options.preprocess())
                if options.eval_data else None)
    build = build_files(compiled, ctx.macro, options.bitline_budget, blob.identity(), options.public(),
                        quant_info(ctx), evaluate, options.timing, options.infer_batch, options.conversion)
    write_build(Path(task.keep_builds or ".") / task.key[:16], build.files, build.manifest, force=True)
    accuracy = build.report.accuracy
    return build.cost, None if accuracy is None else accuracy.to_json()
