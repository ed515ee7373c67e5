"""Calibration data for post-training quantization, and what the quantizer measures on it.

* ``load_feeds``: a calibration batch for every graph input, from ``synthetic`` (seeded
  Gaussian images; a warning says the steps then fit noise, not data; an input that carries no
  batch, ``batching.batch_inputs``, gets one array of its static shape), any source of
  ``cimc.data.sources`` (a dataset name, an image folder, an ``.npz``, a folder of ``.npy``
  inputs; its train split, images preprocessed by ``preprocess``), or from Python an array or
  an iterable of ``(x, y)`` (or ``x``) batches such as a torch ``DataLoader``.
* ``collect_inputs``: the float activations entering every CIM layer, from one run of the
  reference interpreter over the whole batch (batch-generic graph, ``cimc.quant.batching``);
  only those are kept, every other activation is freed once its readers have run;
  ``stream_inputs`` yields them one layer at a time instead (what quantize uses).
* ``window_moments``: ``E[a]`` and ``E[a²]`` of the input every weight multiplies (per group
  and row of the layer's im2col windows, zero padding included), for bias correction and
  activation-aware weight steps.
* ``partial_sums``: a layer's exact per-segment partial sums ``p_s = Σ_{r∈s} w_q[r]·a_q[r]``
  for given weight and activation steps on (at most ``MAX_PIXELS``) output pixels of the
  batch, shape ``(M, S, Cout)``, with the reference's vectorised segment kernel
  (``cimc.quant.reference.segment_matmul``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cimc import data
from cimc.errors import ResourceLimitError, UsageError
from cimc.ir import interpreter
from cimc.ir.graph import Graph
from cimc.limits import MEMORY_BYTES, MEMORY_FACTOR
from cimc.ops.windows import CONV_WORKSPACE_BYTES
from cimc.options import OPTIONS
from cimc.quant import numerics, slicing
from cimc.quant.batching import batch_chunks, batch_generic, batch_inputs
from cimc.quant.cim_layer import CimSpec
from cimc.quant.reference import as_conv_input, im2col, im2col_at, segment_matmul
from cimc.quant.step_search import subsample

log = logging.getLogger(__name__)
MAX_INPUT = float(2**60)

DEFAULT_SIZE: int = OPTIONS["calib_size"].default
MAX_PIXELS = 2048


@dataclass(frozen=True)
class Calibration:
    """A calibration batch: ``feeds`` (graph input → array) and where it came from; ``batched``
    names the inputs that hold the samples (``batching.batch_inputs``; ``None``: all), the
    others keep their static shape."""

    source: str
    feeds: dict[str, np.ndarray]
    batched: frozenset[str] | None = None

    @property
    def size(self) -> int:
        return int(next(iter(self.feeds.values())).shape[0]) if self.feeds else 0

    def take(self, n: int) -> dict[str, np.ndarray]:
        """The first ``n`` samples (the inputs that carry no batch whole)."""
        return {k: v[:n] if self.batched is None or k in self.batched else v for k, v in self.feeds.items()}


def load_feeds(graph: Graph, source: str | Path | object = "synthetic", size: int = DEFAULT_SIZE, seed: int = 0,
               root: str | Path | None = None, preprocess: data.Preprocess = data.DEFAULT,
               memory_budget: int = MEMORY_BYTES) -> Calibration:
    """A calibration batch of ``size`` samples per graph input (module doc). ``source`` is a
    dataset argument (``cimc.data.sources``), a numpy array of inputs, or an iterable of
    batches ``(x, y)`` / ``x`` (numpy arrays or torch tensors; a ``DataLoader`` works): batches
    are read until ``size`` samples are collected. Refused before anything is loaded when
    the run would need more than ``memory_budget`` bytes (``check_memory``)."""
    if size < 1:
        raise UsageError(f"calibration size must be positive, got {size}")
    check_memory(graph, size, memory_budget)
    shapes = {name: graph.shape(name) for name in graph.inputs}
    if isinstance(source, str) and source == "synthetic":
        log.warning("calibrating on synthetic Gaussian data: step sizes will not fit real inputs; "
                    "pass --calib DATASET, an image folder or a folder of .npy files")
        batched = batch_inputs(graph)
        feeds = {name: data.synthetic(shape, size, seed=seed + i).x if name in batched
                 else np.random.default_rng(seed + i).standard_normal(shape).astype(np.float32)
                 for i, (name, shape) in enumerate(shapes.items())}
        return Calibration("synthetic", feeds, batched)
    label = str(source) if isinstance(source, str | Path) else "python"
    if len(shapes) != 1:
        raise UsageError(f"--calib {label} needs a single-input model; this one has {len(shapes)} inputs",
                         hint="use --calib synthetic")
    name, shape = next(iter(shapes.items()))
    if isinstance(source, str | Path):
        batch = data.load_inputs(source, "train", root, shape=shape, n=size, seed=seed, preprocess=preprocess)
    else:
        batch = data.batches.inputs_of(source, size)
    if batch.shape[1:] != tuple(shape[1:]):
        raise UsageError(f"calibration data '{label}' has samples of shape {list(batch.shape[1:])}, "
                         f"the model input '{name}' expects {list(shape[1:])}")
    return Calibration(label, {name: checked_batch(batch[:size], label)})


def memory_need(graph: Graph, samples: int) -> int:
    """Bytes a calibration run over ``samples`` samples holds at its peak, in Python integers
    (nothing allocated): every activation the interpreter keeps, ``nbytes · samples / N`` with
    ``N`` the static batch, plus the largest Conv workspace: the im2col windows of
    ``samples · Ho`` output rows of ``Wo · Cin · kh · kw`` elements, at most
    ``CONV_WORKSPACE_BYTES`` (or one output row) since a larger convolution runs in chunks."""
    batch = max((graph.shape(n)[0] for n in graph.inputs if graph.shape(n)), default=1) or 1
    kept = sum(info.nbytes for info in graph.tensors.values() if info.name not in graph.initializers)
    work = 0
    for node in graph.nodes:
        if node.op == "Conv" and node.outputs[0] in graph.tensors and len(node.inputs) > 1:
            out, w = graph.shape(node.outputs[0]), graph.shape(node.inputs[1])
            itemsize = np.dtype(graph.tensors[node.inputs[0]].dtype).itemsize
            group = int(node.attrs.get("group", 1) or 1)
            row = out[3] * group * math.prod(w[1:]) * itemsize
            work = max(work, min(samples * out[2] * row, max(CONV_WORKSPACE_BYTES, row)))
    return kept * samples // batch + work


def check_memory(graph: Graph, samples: int, budget: int, what: str = "calibrating",
                 option: str = "--calib-size") -> None:
    """``ResourceLimitError`` when running the graph on ``samples`` samples (``what``: calibrating,
    evaluating) needs more than ``budget`` bytes (``memory_need``), naming both options that
    change it."""
    need = memory_need(graph, samples)
    if need > budget:
        raise ResourceLimitError(
            f"{what} on {samples} samples would hold about {need} bytes, more than the memory budget of "
            f"{budget} bytes", hint=f"lower {option}, or raise --max-tensor-bytes (the budget is {MEMORY_FACTOR}× it)",
            details={"bytes": need, "budget": budget})


def checked_batch(batch: np.ndarray, label: str) -> np.ndarray:
    """``batch`` as float32 if it holds at least one sample of real numbers that float32 holds
    (``|x| ≤ 2^60``, the bound model weights have too); else a ``UsageError`` — NaN, inf or
    1e300 inputs would make every step NaN or infinite."""
    if batch.ndim < 1 or batch.shape[0] == 0:
        raise UsageError(f"calibration data '{label}' holds no samples")
    if batch.dtype.kind not in "biuf":
        raise UsageError(f"calibration data '{label}' holds {batch.dtype} values, not numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        wide = np.abs(batch.astype(np.float64, copy=False))
    bad = int((~(wide <= MAX_INPUT)).sum())  # NaN fails too
    if bad:
        raise UsageError(f"calibration data '{label}' holds {bad} NaN, infinite or out-of-range value(s) "
                         f"(beyond ±2^60)", hint="pass finite, normalised inputs")
    return np.ascontiguousarray(batch, dtype=np.float32)


def collect_inputs(graph: Graph, feeds: dict[str, np.ndarray], nodes: Sequence[str]) -> dict[str, np.ndarray]:
    """Float input activations of the named nodes over the batch (one interpreter run, or one
    per chunk of the static batch for a model that mixes its batch axis)."""
    generic = batch_generic(graph)
    wanted = {name: generic.node(name).inputs[0] for name in nodes}
    retain = frozenset(wanted.values())
    runs = [interpreter.run(generic, chunk, retain=retain) for chunk in batch_chunks(graph, feeds)]
    if len(runs) == 1:  # one batch: its arrays as they are, no concatenated copy
        return {name: runs[0][t] for name, t in wanted.items()}
    return {name: np.concatenate([values[t] for values in runs]) for name, t in wanted.items()}


def stream_inputs(graph: Graph, feeds: dict[str, np.ndarray], nodes: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    """``(node, float input)`` of the named nodes, each as soon as the interpreter has computed
    it (topological order), the same values as ``collect_inputs``; every other activation is
    freed once read, so a consumer that drops each input after use holds one layer's input at a
    time besides the live activations. A model that mixes its batch axis runs in chunks of its
    static batch and is collected whole first (``collect_inputs``)."""
    chunks = batch_chunks(graph, feeds)
    if len(chunks) != 1:
        yield from collect_inputs(graph, feeds, nodes).items()
        return
    generic = batch_generic(graph)
    readers: dict[str, list[str]] = {}
    for name in nodes:
        readers.setdefault(generic.node(name).inputs[0], []).append(name)
    for tensor, value in interpreter.stream(generic, chunks[0], readers):
        for name in readers[tensor]:
            yield name, value


def partial_sums(spec: CimSpec, x: np.ndarray, w_step: np.ndarray, w_bits: int, a_step: float,
                 a_bits: int, a_signed: bool, max_pixels: int = MAX_PIXELS, *,
                 cell_bits: int | None = None, dac_bits: int | None = None, w_digits: str = "twos") -> np.ndarray:
    """Partial sums of every ADC conversion of the layer for the given steps, ``(M, K, Cout)``
    with ``K = segments·T·S`` (``cimc.quant.slicing``; ``K = segments`` unsliced) over at most
    ``max_pixels`` output pixels of the batch (a seeded random subset, ``step_search.subsample``:
    evenly spaced pixels would alias with the feature map's period and keep the same positions
    of every image). ``w_digits``: the weight digit scheme (``"twos"`` or ``"offset"``).

    Only the chosen windows are quantized and split into digits (both elementwise, and a
    padding zero stays zero), so no quantized copy of the whole input is made."""
    x4 = as_conv_input(x, spec)
    codes = numerics.weight_codes(spec.weight, w_step, w_bits, slicing.code_max(w_bits, cell_bits, w_digits))
    every = x4.shape[0] * int(np.prod(spec.out_hw(x4.shape[2:])))  # N·Ho·Wo
    index = subsample(every, max_pixels)
    pixels = np.arange(every) if index is None else index
    a_q = numerics.quantize(im2col_at(x4, spec, pixels), a_step, a_bits, a_signed)  # (G, M, rows)
    a_dig = slicing.digits(a_q, a_bits, dac_bits, a_signed)  # (T, G, M, rows)
    nt, ns, m = a_dig.shape[0], slicing.slice_count(w_bits, cell_bits), len(pixels)
    cols = a_dig.transpose(1, 0, 2, 3).reshape(a_q.shape[0], nt * m, spec.rows)  # (G, T·M, rows), t-major
    wide = slicing.digit_columns(codes, w_bits, cell_bits, w_digits)  # (Cout·S, Cin_g, kh, kw)
    p = segment_matmul(cols, wide, replace(spec, weight=wide))  # cols: (G, T·M, rows)
    g, seg = p.shape[:2]  # p: (G, Seg, T·M, Cout_g·S)
    p = p.reshape(g, seg, nt, m, spec.cout // g, ns).transpose(3, 1, 2, 5, 0, 4)  # (M, Seg, T, S, G, Cout_g)
    return np.ascontiguousarray(p).reshape(m, seg * nt * ns, spec.cout)


def window_moments(spec: CimSpec, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(E[a], E[a²])`` over every output pixel of batch ``x``, each ``(G, rows)``: the mean and
    mean square of the float input that row ``r`` of group ``g`` multiplies (padding counts as 0).
    ``E[y_o] = E[a]_g · W[o] + b_o`` is the layer's mean float output (``o`` in group ``g``)."""
    cols, _, _ = im2col(as_conv_input(np.asarray(x, dtype=np.float32), spec), spec)  # (G, M, rows)
    mean = cols.mean(axis=1, dtype=np.float64)
    square = np.einsum("gmr,gmr->gr", cols, cols, dtype=np.float64) / cols.shape[1]
    return mean, square


def weight_importance(spec: CimSpec, x: np.ndarray) -> np.ndarray:
    """``h[o, c, i, j] = E[a²]`` of the input weight ``W[o, c, i, j]`` multiplies, shaped as the
    weights (``step_search.mse_step``'s ``importance``: activation-aware weight steps)."""
    _, square = window_moments(spec, x)
    per_row = np.repeat(square, spec.cout // spec.groups, axis=0)  # (Cout, rows), group-major as W
    return per_row.reshape(spec.weight.shape).astype(np.float32)
