"""Float vs compiled accuracy on the same samples, both run by onnxruntime, and where the
compiled model loses it.

The float model is the imported graph (before any pass) written as batch-free ONNX; the
compiled model is the build's ``model.cim.onnx``, whose numerics equal the emulator's bit for
bit. With labels: top-1 accuracy of each and their drop in points; with or without: how often
both predict the same class and the SQNR of the output. Given the compiled graph, each CIM
layer's SQNR against the float model and its loss by source (weights, DAC, ADC, shift;
``cimc.quant.loss``) on at most ``LAYER_SAMPLES`` of the samples. When the drop (without
labels: the disagreement) exceeds ``max_drop`` points, ``warning`` names the worst layers
(lowest SQNR of their own) and the fix for their dominant source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cimc import data
from cimc.documents.base import Decibels
from cimc.documents.report import Accuracy, LayerLoss
from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.limits import MEMORY_BYTES
from cimc.lowering.model import float_model_bytes
from cimc.quant import loss
from cimc.quant.calibration import check_memory
from cimc.safe_text import safe_name

CHUNK = 256


def run_onnx(model: bytes, x: np.ndarray, input_name: str | None = None) -> np.ndarray:
    """First output of ``model`` on ``x``, in chunks of ``CHUNK`` samples."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = input_name or session.get_inputs()[0].name
    parts = [session.run(None, {name: x[i:i + CHUNK]})[0] for i in range(0, x.shape[0], CHUNK)]
    return np.concatenate(parts)


def top1(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits).reshape(logits.shape[0], -1).argmax(axis=1)


def evaluation_set(graph: Graph, dataset: str | Path | object, size: int | None, root: str | Path | None,
                   preprocess: data.Preprocess = data.DEFAULT, split: str = "test") -> data.Dataset:
    """The ``split`` of ``dataset`` (a dataset argument of ``cimc.data.sources``, or from Python
    an iterable of ``(x, y)`` batches such as a torch ``DataLoader``, or a ``Dataset``), checked
    against the model's input shape."""
    shape = _single_input(graph)
    if isinstance(dataset, str | Path):
        ds = data.load_dataset(dataset, split, root, shape=shape, n=size or 256, preprocess=preprocess)
    else:
        ds = data.batches.dataset_of(dataset, size)
    _check_shape(ds.name, ds.x, shape)
    return ds.take(size) if size else ds


#: Samples of the per-layer loss measurement (the numpy reference runs every layer five ways).
LAYER_SAMPLES = 64
#: Default threshold of the warning, in top-1 percentage points (``--max-acc-drop``).
MAX_DROP = 1.0
#: Layers the warning names.
WORST = 3
#: What helps against each source of loss (``cimc.quant.loss.SOURCES``).
FIXES = {
    "weights": "weights: more weight bits (--w-bits or --bits FILE; wider weights are bit-sliced over cells), "
               "per-column weight steps (--granularity column) or `cimc qat`",
    "dac": "inputs: more input bits (--a-bits or --bits FILE; fed bit-serially), calibration on real data "
           "(--calib DATA --calib-size 256) or `cimc qat`",
    "adc": "ADC: more ADC bits for those layers (--adc-bits or --bits FILE, up to the macro's; else a macro "
           "with wider ADCs) or ADC-aware QAT (`cimc qat`, phase 2)",
    "shift": "shift: exact output scales (--no-shift)",
}


@dataclass(frozen=True)
class Samples:
    """Evaluation inputs and their labels (``None`` when they have none)."""

    name: str
    x: np.ndarray
    y: np.ndarray | None


def evaluation_samples(graph: Graph, dataset: str | Path | object, size: int | None, root: str | Path | None,
                       preprocess: data.Preprocess = data.DEFAULT, split: str = "test") -> Samples:
    """Like ``evaluation_set`` but unlabelled data are allowed: ``.npy`` inputs, ``synthetic``
    (its labels are random) and Python batches without labels give ``y = None``."""
    shape = _single_input(graph)
    if isinstance(dataset, str | Path):
        x, y, _ = data.load_samples(dataset, split, root, shape=shape, n=size or 256, preprocess=preprocess)
        samples = Samples(str(dataset), x, None if str(dataset) == "synthetic" else y)
    else:
        x, y = data.batches.collect(dataset, size, labelled=False)
        samples = Samples("python", x, y)
    _check_shape(samples.name, samples.x, shape)
    if size:
        return Samples(samples.name, samples.x[:size], None if samples.y is None else samples.y[:size])
    return samples


def _single_input(graph: Graph) -> tuple[int, ...]:
    if len(graph.inputs) != 1:
        raise UsageError(f"--eval needs a single-input model; this one has {len(graph.inputs)} inputs")
    return tuple(graph.shape(graph.inputs[0]))


def _check_shape(name: str, x: np.ndarray, shape: tuple[int, ...]) -> None:
    if x.shape[1:] != tuple(shape[1:]):
        raise UsageError(f"evaluation data '{name}' has samples of shape {list(x.shape[1:])}, "
                         f"the model expects {list(shape[1:])}")
    if x.shape[0] == 0:
        raise UsageError(f"evaluation data '{name}' holds no samples")


def accuracy(float_logits: np.ndarray, compiled_logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    f, c = top1(float_logits), top1(compiled_logits)
    return {"float_top1": float((f == labels).mean()), "compiled_top1": float((c == labels).mean()),
            "agreement": float((f == c).mean())}


def decibels(value: float) -> Decibels:
    """A dB figure as the report writes it (``"inf"``/``"-inf"`` when not finite)."""
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def output_sqnr(float_logits: np.ndarray, compiled_logits: np.ndarray) -> float:
    """``10·log10(Σ f² / Σ (c − f)²)`` of the model outputs."""
    f = np.asarray(float_logits, dtype=np.float64)
    return loss.db(float(np.square(f).sum()), float(np.square(np.asarray(compiled_logits, np.float64) - f).sum()))


def layer_rows(losses: list[loss.LayerLoss]) -> list[LayerLoss]:
    """The report's rows of ``cimc.quant.loss.layer_losses``."""
    return [LayerLoss(name=x.name, sqnr_db=decibels(x.sqnr_db), local_sqnr_db=decibels(x.local_sqnr_db),
                      dominant=x.dominant,  # type: ignore[arg-type]  # one of SOURCES
                      **{f"{s}_db": None if v is None else decibels(v) for s, v in x.sources_db.items()})
            for x in losses]


def accuracy_warning(loss_points: float, labelled: bool, max_drop: float, losses: list[loss.LayerLoss],
                     top1s: tuple[float, float] | None = None) -> str | None:
    """The warning (module doc) when ``loss_points`` — the top-1 drop, or without labels the
    disagreement, in points — exceeds ``max_drop``; ``None`` otherwise."""
    if not loss_points > max_drop:
        return None
    if labelled and top1s is not None:
        text = (f"compiled top-1 is {loss_points:.2f} points below float ({100 * top1s[0]:.2f}% -> "
                f"{100 * top1s[1]:.2f}%; threshold {max_drop:.2f})")
    else:
        text = (f"compiled and float top-1 differ on {loss_points:.2f}% of the samples (no labels: the accuracy "
                f"drop is unknown, at most that; threshold {max_drop:.2f})")
    worst = sorted(losses, key=lambda x: x.local_sqnr_db)[:WORST]
    if not worst:
        return f"{text}; fix: `cimc qat` (quantization-aware training)"
    named = ", ".join(f"{safe_name(x.name)} ({x.local_sqnr_db:.1f} dB alone, mostly {x.dominant})" for x in worst)
    sources = dict.fromkeys(x.dominant for x in worst)
    return f"{text}; worst layers: {named}; fix: " + "; ".join(FIXES[s] for s in sources)


def evaluator(graph: Graph, dataset: str | Path | object, size: int | None = None, root: str | Path | None = None,
              preprocess: data.Preprocess = data.DEFAULT, max_drop: float = MAX_DROP,
              layer_samples: int = LAYER_SAMPLES, memory_budget: int = MEMORY_BYTES) -> Callable[..., Accuracy]:
    """A function ``evaluate(model_cim_onnx_bytes, compiled_graph=None)`` giving the report's
    ``accuracy`` section on the test split of ``dataset`` (a name, a path, or an iterable of
    ``(x, y)`` batches; unlabelled data measure agreement and SQNR only). With the compiled
    graph it also measures every CIM layer's loss on ``layer_samples`` samples. The samples'
    run must fit ``memory_budget`` (``calibration.check_memory``), checked before it starts."""
    ds = evaluation_samples(graph, dataset, size, root, preprocess)
    check_memory(graph, int(ds.x.shape[0]), memory_budget, "evaluating", "--eval-size")
    float_bytes = float_model_bytes(graph)
    cache: dict[str, np.ndarray] = {}

    def evaluate(compiled: bytes, compiled_graph: Graph | None = None) -> Accuracy:
        if "float" not in cache:
            cache["float"] = run_onnx(float_bytes, ds.x)
        f, c = cache["float"], run_onnx(compiled, ds.x)
        agreement = float((top1(f) == top1(c)).mean())
        losses = loss.layer_losses(compiled_graph, ds.x[:layer_samples]) \
            if compiled_graph is not None and layer_samples > 0 else []
        labelled = ds.y is not None
        top1s = None
        if ds.y is not None:
            scores = accuracy(f, c, ds.y)
            top1s = (scores["float_top1"], scores["compiled_top1"])
        drop = None if top1s is None else 100 * (top1s[0] - top1s[1])
        points = drop if drop is not None else 100 * (1 - agreement)
        return Accuracy(dataset=ds.name, split="test", samples=int(ds.x.shape[0]), labelled=labelled,
                        float_top1=None if top1s is None else top1s[0],
                        compiled_top1=None if top1s is None else top1s[1], agreement=agreement,
                        output_sqnr_db=decibels(output_sqnr(f, c)), drop=drop, max_drop=max_drop,
                        layer_samples=min(layer_samples, int(ds.x.shape[0])) if losses else 0,
                        layers=layer_rows(losses), warning=accuracy_warning(points, labelled, max_drop, losses, top1s))

    return evaluate
