"""Quantization options of ``cimc compile`` (``quant_options``) and their console summary.

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

import click

from cimc.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

#: The keyword arguments ``quant_options`` adds to a command.
PARAMS = ("calib", "calib_size", "granularity", "weight_step", "no_shift", "w_bits", "a_bits", "adc_bits",
          "bits_file", "eval_data", "eval_size", "data_root")
BIT_KEYS = ("w_bits", "a_bits", "adc_bits")


def quant_options(fn: F) -> F:
    """Add the quantization options (module doc) to a click command."""
    bits = click.IntRange(1, 16)
    options = [
        click.option("--calib", default="synthetic", show_default=True,
                     help="Calibration data: synthetic, a dataset name (digits, cifar10) or a folder of .npy."),
        click.option("--calib-size", type=click.IntRange(min=1), default=16, show_default=True,
                     help="Calibration samples."),
        click.option("--granularity", type=click.Choice(["layer", "column"]), default="layer", show_default=True,
                     help="One weight/ADC step per layer (paper) or per output column (ColumnQuant)."),
        click.option("--weight-step", type=click.Choice(["mse", "lsq"]), default="mse", show_default=True,
                     help="Weight step: MSE-optimal or LSQ initialisation."),
        click.option("--no-shift", is_flag=True, help="Keep exact output scales (no power-of-two shift)."),
        click.option("--w-bits", type=bits, help="Weight bits of every layer (default: the macro's cell bits; "
                     "wider weights are bit-sliced over cells)."),
        click.option("--a-bits", type=bits, help="Input bits of every layer (default: the macro's DAC bits; "
                     "wider inputs are fed bit-serially)."),
        click.option("--adc-bits", type=bits, help="ADC bits of every layer (at most the macro's)."),
        click.option("--bits", "bits_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="Per-layer bits, JSON or TOML: {layer: {w_bits, a_bits, adc_bits}}."),
        click.option("--eval", "eval_data", help="Dataset whose test split measures float vs compiled accuracy."),
        click.option("--eval-size", type=click.IntRange(min=1), help="Evaluate on at most this many samples."),
        click.option("--data-root", type=click.Path(file_okay=False), help="Folder of CIFAR-10 (python batches)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def pop_quant(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the quantization options from ``kwargs``; return them as ``CompileOptions`` fields."""
    raw = {k: kwargs.pop(k) for k in PARAMS if k in kwargs}
    return {"calib": raw.get("calib", "synthetic"), "calib_size": raw.get("calib_size", 16),
            "granularity": raw.get("granularity", "layer"), "weight_method": raw.get("weight_step", "mse"),
            "no_shift": bool(raw.get("no_shift", False)), "w_bits": raw.get("w_bits"), "a_bits": raw.get("a_bits"),
            "adc_bits": raw.get("adc_bits"), "layer_bits": read_bits(raw.get("bits_file")),
            "eval_data": raw.get("eval_data"), "eval_size": raw.get("eval_size"), "data_root": raw.get("data_root")}


def read_bits(path: Path | None) -> dict[str, dict[str, int]] | None:
    """Per-layer bits from a JSON or TOML file (module doc), checked."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read bits file {path.name}: {exc}") from exc
    if not isinstance(doc, dict):
        raise UsageError(f"bits file {path.name} must map layer names to {{w_bits, a_bits, adc_bits}}")
    return {str(layer): _layer_bits(path.name, str(layer), entry) for layer, entry in doc.items()}


def _layer_bits(file: str, layer: str, entry: Any) -> dict[str, int]:
    if not isinstance(entry, dict) or not entry or set(entry) - set(BIT_KEYS):
        raise UsageError(f"bits file {file}: layer '{layer}' needs some of {', '.join(BIT_KEYS)} and nothing else")
    for key, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
            raise UsageError(f"bits file {file}: layer '{layer}': {key} must be an integer in 1..16, got {value!r}")
    return {k: int(v) for k, v in entry.items()}


def print_quant(report: dict[str, Any]) -> None:
    """The quantization table and the accuracy line, on the console."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cimc.backend.quant_report import HEADERS, quant_cells
    from cimc.documents.report import QuantRow
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
