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

import json
import tomllib
from collections.abc import Callable
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
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read bits file {path.name}: {exc}") from exc
    if not isinstance(doc, dict):
        raise UsageError(f"bits file {path.name} must map layer names to {{w_bits, a_bits, adc_bits}}")
    return {str(layer): validate_bits(entry, f"bits file {path.name}: layer '{layer}'") for layer, entry in doc.items()}


def print_quant(report: dict[str, Any]) -> None:
    """The quantization table and the accuracy line, on the console."""
    from rich.markup import escape
    from rich.table import Table

    from cimc.backend.quant_report import HEADERS, quant_cells
    from cimc.documents.report import QuantRow
    from cimc.safe_text import safe_console as Console
    from cimc.safe_text import safe_name

    quant, console = report.get("quantization"), Console(width=max(150, Console().width))
    if quant is not None:
        table = Table(title="quantization")
        for header in HEADERS:
            table.add_column(header, justify="left" if header in ("layer", "source") else "right")
        for layer in quant["layers"]:
            cells = quant_cells(QuantRow.model_validate(layer))  # the report cimc just wrote
            table.add_row(escape(safe_name(cells[0])), *(escape(cell) for cell in cells[1:]))  # names from the model
        console.print(table)
    acc = report.get("accuracy")
    if acc is not None:
        console.print(f"• accuracy on {acc['samples']} {acc['dataset']} {acc['split']} samples: float "
                      f"{100 * acc['float_top1']:.2f}%, compiled {100 * acc['compiled_top1']:.2f}%")
