"""Quantization options of ``cimc compile`` (``quant_options``, declared in ``cimc.options``)
and their console summary.

``--calib`` (``synthetic``, a dataset name or a folder of ``.npy``), ``--calib-size``,
``--granularity layer|column``, ``--weight-step mse|lsq``, ``--no-shift``, ``--w-bits``,
``--a-bits``, ``--adc-bits`` (bits of every layer; wider than a cell or DAC: bit-sliced),
``--bits FILE`` (per-layer bits, JSON or TOML:
``{"conv1": {"w_bits": 3, "adc_bits": 4}}``), ``--eval NAME`` / ``--eval-size`` (float vs compiled
accuracy in the report) and ``--data-root`` (where CIFAR-10 lives).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cimc.cli.options import QUANT, declared
from cimc.errors import UsageError
from cimc.options import OPTIONS, validate_bits

F = TypeVar("F", bound=Callable[..., Any])


def quant_options(fn: F) -> F:
    """Add the quantization options (module doc) to a click command."""
    return declared(*QUANT)(fn)


def pop_quant(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the quantization options from ``kwargs``; return them as ``CompileOptions`` fields
    (the ``--bits`` file read)."""
    quant = {name: kwargs.pop(OPTIONS[name].param or name) for name in QUANT}
    quant["layer_bits"] = read_bits(quant["layer_bits"])
    return quant


def read_bits(path: Path | None) -> dict[str, dict[str, int]] | None:
    """Per-layer bits from a JSON or TOML file (module doc), checked (``cimc.options``)."""
    if path is None:
        return None
    from cimc.limits import OPTIONS_FILE_BYTES
    from cimc.untrusted import load_json, load_toml, read_regular

    name = f"bits file {path.name}"
    raw = read_regular(path, limit=OPTIONS_FILE_BYTES, what=name)
    doc = load_toml(raw, name) if path.suffix == ".toml" else load_json(raw, name)
    if not isinstance(doc, dict):
        raise UsageError(f"bits file {path.name} must map layer names to {{w_bits, a_bits, adc_bits}}")
    return {str(layer): validate_bits(entry, f"bits file {path.name}: layer '{layer}'") for layer, entry in doc.items()}


#: Columns of the quantization table left out of a 100-column console (``--wide`` shows them).
QUANT_NARROW_DROP = frozenset({"scale error", "fold"})


def print_quant(report: dict[str, Any], wide: bool = False, modules: Mapping[str, str] | None = None) -> None:
    """The quantization table and the accuracy section (``print_accuracy``), on the console; layers
    named by their module paths where ``modules`` has them (``cimc.cli.tables``)."""
    from cimc.backend.quant_report import HEADERS, quant_cells
    from cimc.cli.tables import console, print_table
    from cimc.documents.report import QuantRow

    quant, out = report.get("quantization"), console(wide)
    if quant is not None:
        rows = [quant_cells(QuantRow.model_validate(layer)) for layer in quant["layers"]]  # the report cimc just wrote
        print_table(out, "quantization", HEADERS, rows, wide=wide, narrow_drop=QUANT_NARROW_DROP,
                    left=frozenset({"layer", "source"}), modules=modules)
    print_accuracy(report, out, wide, modules)


def print_accuracy(report: dict[str, Any], out: Any, wide: bool = False,
                   modules: Mapping[str, str] | None = None) -> None:
    """The per-layer loss table, the accuracy line and the warning (bold, on the console), or
    that the accuracy is unknown."""
    from rich.markup import escape

    from cimc.backend.quant_report import LOSS_HEADERS, accuracy_lines, loss_cells
    from cimc.cli.tables import print_table
    from cimc.documents.report import Accuracy

    if report.get("accuracy_unknown"):
        out.print(f"• accuracy unknown: {escape(report['accuracy_unknown'])}")
    if report.get("accuracy") is None:
        return
    acc = Accuracy.model_validate(report["accuracy"])  # the report cimc just wrote
    if acc.layers:
        print_table(out, f"loss per layer ({acc.layer_samples} samples; 'alone': on the float model's input)",
                    LOSS_HEADERS, [loss_cells(layer) for layer in acc.layers], wide=wide,
                    left=frozenset({"layer", "dominant"}), modules=modules)
    out.print("• " + escape(accuracy_lines(acc)[0]))
    if acc.warning is not None:
        out.print(f"[bold yellow]warning:[/] {escape(acc.warning)}")
