"""Click options derived from the options model (``cimc.options``): every command that takes
``--macro``, ``--tiling``, ``--w-bits`` … gets the same flag, type, range, default and help.

    @declared("macro", "tiling", "map_fc")
    @declared("calib_size", default=64)      # a command's own default, same type and range

A command receives each value under the option's ``param`` (raw text it parses itself:
``--bits FILE`` as ``bits_file``, ``--input-shape`` as ``input_shape``) or its ``name``; a
list of names (``--passes a,b``, ``--disable a --disable b,c``) as a tuple of names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cimc.cli.common import FiniteFloat
from cimc.options import OPTIONS, Option

F = TypeVar("F", bound=Callable[..., Any])

#: The options every compiling command shares, in help order.
MAPPING = ("macro", "tiling", "placement", "map_fc")
QUANT = ("calib", "calib_size", "granularity", "weight_method", "adc_method", "bias_correction", "adaround",
         "weight_digits", "equalize", "no_shift", "w_bits", "a_bits", "adc_bits", "layer_bits",
         "eval_data", "eval_size", "max_acc_drop", "data_root", "image_size", "mean", "std")
#: Weight-pool compression (``cimc compile`` and ``cimc qat``; docs/weight-pool.md).
POOL = ("weight_pool", "pool_vector", "pool_error_bits", "pool_error_prune")
#: The resource limits of every command that imports a model (README "Resource limits").
LIMITS = ("max_model_bytes", "max_tensor_bytes")
#: The image preprocessing of every command that reads a dataset (``cimc.data.preprocess``).
PREPROCESS = ("image_size", "mean", "std")
#: The help of a command's ``--data`` (``cimc.data.sources``).
DATA_HELP = ("Training data: digits, cifar10, mnist, synthetic, an image folder (DIR/<class>/*.png; train/ and "
             "test/ subfolders split it) or an .npz with x and y.")


def click_type(o: Option) -> click.ParamType | None:
    """The click type of option ``o`` (``None``: a flag or plain text)."""
    if o.choices:
        return click.Choice(list(o.choices))
    if o.kind is int:
        return click.IntRange(_int(o.low), _int(o.high))
    if o.kind is float:
        return FiniteFloat(o.low, o.high)
    if o.path == "file":
        return click.Path(dir_okay=False, path_type=Path)
    if o.path == "folder":
        return click.Path(file_okay=False)
    return None


def click_option(name: str, **override: Any) -> Callable[[F], F]:
    """The click option of declaration ``name``; ``override`` changes click settings such as
    ``default``, ``required`` or ``help`` (never the type)."""
    o = OPTIONS[name]
    settings: dict[str, Any] = {"help": o.help}
    if o.kind is bool:
        settings.update(is_flag=True, default=bool(o.default))  # explicit: click 8.5 leaves flags UNSET
    elif o.kind is dict:
        settings.update(multiple=o.repeat, type=click_type(o))
    elif o.kind is tuple:
        settings.update(multiple=o.repeat, callback=_names)
    else:
        settings.update(type=click_type(o), default=o.default, show_default=o.default is not None)
    settings.update(override)
    return click.option(o.flag, o.param or o.name, **settings)


def declared(*names: str, **override: Any) -> Callable[[F], F]:
    """All of ``names`` as click options, in that order on ``--help``."""

    def apply(fn: F) -> F:
        for name in reversed(names):
            fn = click_option(name, **override)(fn)
        return fn

    return apply


def _names(ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """Comma-separated names, from one flag or every repetition of it."""
    texts = (value,) if isinstance(value, str) else value or ()
    return tuple(n.strip() for text in texts for n in text.split(",") if n.strip())


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
