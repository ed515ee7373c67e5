"""Float vs compiled accuracy on the same labelled samples, both run by onnxruntime.

The float model is the imported graph (before any pass) written as batch-free ONNX; the
compiled model is the build's ``model.cim.onnx``, whose numerics equal the emulator's bit for
bit. Top-1 accuracy of each, and the fraction of samples where both predict the same class,
show what the hardware numerics cost before any QAT.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cimc import data
from cimc.documents.report import Accuracy
from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.lowering.model import float_model, serialize

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
    if len(graph.inputs) != 1:
        raise UsageError(f"--eval needs a single-input model; this one has {len(graph.inputs)} inputs")
    shape = graph.shape(graph.inputs[0])
    if isinstance(dataset, str | Path):
        ds = data.load_dataset(dataset, split, root, shape=shape, n=size or 256, preprocess=preprocess)
    else:
        ds = data.batches.dataset_of(dataset, size)
    if ds.x.shape[1:] != tuple(shape[1:]):
        raise UsageError(f"evaluation data '{ds.name}' has samples of shape {list(ds.x.shape[1:])}, "
                         f"the model expects {list(shape[1:])}")
    return ds.take(size) if size else ds


def accuracy(float_logits: np.ndarray, compiled_logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    f, c = top1(float_logits), top1(compiled_logits)
    return {"float_top1": float((f == labels).mean()), "compiled_top1": float((c == labels).mean()),
            "agreement": float((f == c).mean())}


def evaluator(graph: Graph, dataset: str | Path | object, size: int | None = None, root: str | Path | None = None,
              preprocess: data.Preprocess = data.DEFAULT) -> Callable[[bytes], Accuracy]:
    """A function of ``model.cim.onnx`` bytes giving the report's ``accuracy`` section, on the
    test split of ``dataset`` (``evaluation_set``: a name, a path, or an iterable of ``(x, y)``
    batches)."""
    ds = evaluation_set(graph, dataset, size, root, preprocess)
    float_bytes = serialize(float_model(graph))

    def evaluate(compiled: bytes) -> Accuracy:
        scores = accuracy(run_onnx(float_bytes, ds.x), run_onnx(compiled, ds.x), ds.y)
        return Accuracy(dataset=ds.name, split="test", samples=len(ds), **scores)

    return evaluate
