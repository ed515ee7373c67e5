"""ONNX export of zoo models with torch's ``torch.export``-based (dynamo) exporter.

The exported file is meant to be a clean, self-contained, reproducible input
for the compiler:

* static shapes (the example input fixes every dimension), opset 18;
* weights stored as initializers inside the file (no external ``.data`` file;
  torch 2.13 defaults to ``external_data=True``, so it is turned off);
* the exporter's optimizer is off: it would fuse BatchNormalization into the
  convs, and cimc needs BN's γ for channel morphing (and folds BN itself, in the
  ``fold-batchnorm`` pass). The Shape/Expand/CastLike helpers the unoptimised
  export contains are folded by cimc's frontend;
* ``ReduceMean`` over H and W with ``keepdims=1`` (what the exporter makes of
  ``AdaptiveAvgPool2d(1)``) is rewritten to ``GlobalAveragePool``;
* per-node metadata (stack traces with absolute source paths, FX node text)
  and doc strings are stripped, so exporting the same model twice, from any
  install location, gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import onnx
from onnx import numpy_helper

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

OPSET_VERSION = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration",)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's internal deprecation warnings and torchvision notices."""
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def to_onnx_proto(model: torch.nn.Module, example_input: torch.Tensor) -> onnx.ModelProto:
    """Export ``model`` (in eval mode) to a cleaned-up in-memory ``ModelProto``."""
    import torch

    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            model.eval(),
            (example_input,),
            None,
            dynamo=True,
            opset_version=OPSET_VERSION,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            external_data=False,
            optimize=False,
            verbose=False,
        )
    assert program is not None
    proto = fold_without_fusing(program.model_proto)
    global_pool_from_reduce_mean(proto)
    strip_metadata(proto)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: torch.nn.Module, example_input: torch.Tensor, path: str | os.PathLike[str]) -> None:
    """Export ``model`` to a self-contained ONNX file at ``path``."""
    proto = to_onnx_proto(model, example_input)
    onnx.save_model(proto, os.fspath(path), save_as_external_data=False)
    logger.info("exported %s (%d nodes)", os.fspath(path), len(proto.graph.node))


def strip_metadata(proto: onnx.ModelProto) -> None:
    """Remove per-node metadata and doc strings (they hold machine-specific paths)."""
    proto.doc_string = ""
    proto.graph.doc_string = ""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for initializer in proto.graph.initializer:
        del initializer.metadata_props[:]
    for value in [*proto.graph.value_info, *proto.graph.input, *proto.graph.output]:
        del value.metadata_props[:]


def fold_without_fusing(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold and drop dead nodes with onnxscript, without its fusion rewrites
    (so BatchNormalization survives for cimc's own ``fold-batchnorm``)."""
    import onnxscript.optimizer as optimizer

    folded = optimizer.fold_constants(proto)
    proto = folded if isinstance(folded, onnx.ModelProto) else proto
    optimizer.remove_unused_nodes(proto)
    return proto


def _constant_ints(proto: onnx.ModelProto, name: str) -> list[int] | None:
    """Integer values of the initializer or ``Constant`` output ``name``, else ``None``."""
    for initializer in proto.graph.initializer:
        if initializer.name == name:
            return [int(v) for v in numpy_helper.to_array(initializer).ravel()]
    for node in proto.graph.node:
        if node.op_type == "Constant" and list(node.output) == [name] and node.attribute[0].name == "value":
            return [int(v) for v in numpy_helper.to_array(node.attribute[0].t).ravel()]
    return None


def _tensor_ranks(proto: onnx.ModelProto) -> dict[str, int]:
    """Map each value name to its rank, from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    ranks: dict[str, int] = {}
    for value in [*graph.value_info, *graph.input, *graph.output]:
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def _is_spatial_mean(node: onnx.NodeProto, proto: onnx.ModelProto, rank: int | None) -> bool:
    """True if ``node`` is a keepdims ReduceMean over exactly H and W of a 4-D tensor."""
    if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx") or rank != 4:
        return False
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("keepdims", 1) != 1 or len(node.input) != 2:
        return False
    axes = _constant_ints(proto, node.input[1])
    return axes is not None and sorted(a % 4 for a in axes) == [2, 3]


def _drop_unused_initializers(proto: onnx.ModelProto) -> None:
    """Remove initializers that no node consumes."""
    used = {name for node in proto.graph.node for name in node.input}
    used.update(value.name for value in proto.graph.output)
    keep = [init for init in proto.graph.initializer if init.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)


def global_pool_from_reduce_mean(proto: onnx.ModelProto) -> None:
    """Rewrite spatial ``ReduceMean(keepdims=1)`` nodes as ``GlobalAveragePool``."""
    ranks = _tensor_ranks(proto)
    for node in proto.graph.node:
        if node.op_type == "ReduceMean" and _is_spatial_mean(node, proto, ranks.get(node.input[0])):
            replacement = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
            node.CopyFrom(replacement)
    _drop_unused_initializers(proto)
