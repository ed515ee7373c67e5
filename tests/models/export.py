"""Export a corpus model to ONNX the way users do.

* ``exporter="dynamo"``: ``torch.onnx.export(model, (x,), path)`` — torch 2.13's default
  (``torch.export`` based) exporter with all its defaults: the opset it chooses, its optimizer on,
  and ``external_data=True``: the weights go to ``path + ".data"`` beside the model, whatever its size
  (cimc reads external data inside the model's folder).
* ``exporter="legacy"``: ``torch.onnx.export(model, (x,), path, dynamo=False)`` — the TorchScript
  exporter at its default opset.

Both exporters already fold an eval-mode BatchNormalization that follows a Conv into the conv (the
dynamo exporter's onnxscript optimizer, the legacy exporter's constant folding), so a plain export has
no BatchNormalization after a Conv. Two variants around that:

* ``fuse_bn=True`` folds every Conv2d → BatchNorm2d pair in torch before export (``fuse_batchnorm``,
  what deployment scripts do), so the result does not depend on the exporter's optimizer;
* ``keep_bn=True`` turns the exporter's folding off so BatchNormalization reaches cimc (dynamo:
  ``optimize=False``; legacy: ``do_constant_folding=False``) — what a user gets who asks the exporter
  not to optimise, and what cimc's own morphing needs (BN's γ).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Literal

import onnx
import torch
from torch import nn

Exporter = Literal["dynamo", "legacy"]
EXPORTERS: tuple[Exporter, ...] = ("dynamo", "legacy")


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d equal to ``bn(conv(x))`` in eval mode.

    With BN's running mean μ, running variance σ², ε, γ (weight) and β (bias), per output channel o:
    ``s_o = γ_o / sqrt(σ²_o + ε)``; the folded weight is ``W'[o] = s_o · W[o]`` and the folded bias
    ``b'_o = s_o · (b_o − μ_o) + β_o`` (``b_o = 0`` for a bias-free conv). Computed in float64 and
    rounded once to the conv's dtype.
    """
    fused = copy.deepcopy(conv)
    assert bn.running_mean is not None and bn.running_var is not None, "BN without running statistics"
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        shape = (-1,) + (1,) * (conv.weight.dim() - 1)
        fused.weight.copy_((conv.weight.double() * scale.reshape(shape)).to(conv.weight.dtype))
        new_bias = scale * (bias - bn.running_mean.double()) + bn.bias.double()
        fused.bias = nn.Parameter(new_bias.to(conv.weight.dtype))
    return fused


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Conv2d → BatchNorm2d pair (consecutive children of one module,
    or ``conv1``/``bn1``-style sibling attributes used as ``bn(conv(x))``) folded: the conv becomes
    the folded conv and the BN an ``nn.Identity``. Found by tracing ``model`` with ``torch.fx``: a
    BatchNorm2d node whose only input is a Conv2d node used nowhere else."""
    import torch.fx as fx

    model = copy.deepcopy(model).eval()
    traced = fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and isinstance(modules[src.target], nn.Conv2d)
                and len(src.users) == 1):
            continue
        _set(model, str(src.target), fold_conv_bn(modules[src.target], modules[node.target]))
        _set(model, str(node.target), nn.Identity())
    return model


def _set(model: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, attr = target.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' warnings and progress prints (they go to stdout)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        levels = {n: logging.getLogger(n).level for n in ("torch.onnx", "torch.export", "onnxscript")}
        for n in levels:
            logging.getLogger(n).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


def export(model: nn.Module, x: torch.Tensor, path: str | os.PathLike[str], exporter: Exporter = "dynamo",
           fuse_bn: bool = False, keep_bn: bool = False) -> onnx.ModelProto:
    """Export ``model`` (eval mode) on the example input ``x`` to ``path``; returns the written model."""
    if fuse_bn and keep_bn:
        raise ValueError("fuse_bn and keep_bn exclude each other")
    model = fuse_batchnorm(model) if fuse_bn else model.eval()
    path = os.fspath(path)
    with _quiet(), torch.no_grad():
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), path, optimize=not keep_bn)
        elif exporter == "legacy":
            torch.onnx.export(model, (x,), path, dynamo=False, do_constant_folding=not keep_bn)
        else:
            raise ValueError(f"unknown exporter {exporter!r}")
    return onnx.load(path)


def opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the file was written at."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def op_types(model: onnx.ModelProto) -> list[str]:
    """The sorted distinct op types of the main graph."""
    return sorted({n.op_type for n in model.graph.node})
