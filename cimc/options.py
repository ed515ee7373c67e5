"""The options model: every compile option declared once.

An ``Option`` states its value type, range or choices, default, help text, the passes that
read it and whether it shapes the build (``shapes_build``: part of the build's identity;
``recorded``: written to the manifest's ``options``, where ``public()`` takes it from). The
click options of every command (``cimc.cli.options``), the sweep's axes (``cimc.sweep.config``),
the search's bit candidates (``cimc.search.space``), the QAT bit checks (``cimc.train.config``),
bits files and ``CompileOptions`` all come from, or are checked against, these declarations,
and ``validate`` is the one place where a value is refused::

    validate("w_bits", 1)        # UsageError: w_bits = 1 must be an integer in 2..16

Bits: ``w_bits`` and ``adc_bits`` are at least 2, because a 1-bit narrow signed code
(``|q| ≤ 2^(b−1) − 1``) is always 0; ``a_bits`` may be 1 (unsigned inputs 0/1): a layer whose
inputs turn out signed is refused then, when quantize, QAT or a QAT file learns the sign
(``numerics.always_zero``).

Resource limits (``max_model_bytes``, ``max_tensor_bytes``, ``max_data_bytes``) are options too: their defaults
come from ``cimc.limits`` (where every limit is declared once), the frontend reads them from
here, and the ``ResourceLimitError`` of each names its flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cimc.errors import UsageError
from cimc.limits import DATA_FILE_BYTES, IMAGE_SIZE, MODEL_BYTES, TENSOR_BYTES

BIT_KEYS = ("w_bits", "a_bits", "adc_bits")
MAX_BITS = 16


@dataclass(frozen=True)
class Option:
    """One option (module doc). ``kind`` is ``int``, ``float``, ``str``, ``bool``, ``dict`` (a
    structured value parsed from ``flag``'s text) or ``tuple`` (a list of names); ``low``/``high``
    bound numbers, ``choices`` bound strings. On the command line, ``param`` is the keyword a
    command receives when it differs from ``name`` (raw text the command parses), ``path`` says
    the text names a ``"file"`` or a ``"folder"`` and ``repeat`` that the flag may be repeated.
    ``record_default=False``: a recorded option is written to the manifest only when it differs
    from its default (an option added later leaves the builds made without it byte-identical)."""

    name: str
    flag: str
    kind: type
    help: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    passes: tuple[str, ...] = ()
    shapes_build: bool = False
    recorded: bool = False
    param: str | None = None
    path: str = ""
    repeat: bool = False
    record_default: bool = True

    def validate(self, value: Any, where: str | None = None) -> Any:
        """``value`` if it is allowed (``None`` where the default is ``None``), else a ``UsageError``
        naming ``where`` (default: the option's name)."""
        if value is None and self.default is None:
            return None
        what = where or self.name
        if self.choices and value not in self.choices:
            raise UsageError(f"{what} = {value!r} is not one of {', '.join(self.choices)}")
        if self.kind in (int, float) and not _number_in(value, self.kind, self.low, self.high):
            raise UsageError(f"{what} = {value!r} must be {self.describe()}")
        if self.kind is bool and not isinstance(value, bool):
            raise UsageError(f"{what} = {value!r} must be true or false")
        if self.kind is str and not isinstance(value, str):
            raise UsageError(f"{what} = {value!r} must be a string")
        return float(value) if self.kind is float else value

    def describe(self) -> str:
        """The allowed values in words: ``an integer in 2..16``, ``one of layer, column`` …"""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        noun = "an integer" if self.kind is int else "a number"
        if self.high is not None:
            return f"{noun} in {_num(self.low)}..{_num(self.high)}"
        return f"{noun} >= {_num(self.low)}" if self.low is not None else noun


def _number_in(value: Any, kind: type, low: float | None, high: float | None) -> bool:
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or not -float("inf") < value < float("inf"):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _num(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


_QUANT = ("quantize",)
_CALIB = ("quantize", "scale-to-shift")
_POOL = ("pool-weights",)
#: Default vector length and the largest pool of ``--weight-pool``.
POOL_VECTOR = 16
POOL_MAX = 1 << 16
_DECLARED = (
    Option("macro", "--macro", str, "Macro preset name or a .toml/.json spec file.", default="paper",
           shapes_build=True),
    Option("bitline_budget", "--bl", int, "On-chip bitline budget.", low=1, shapes_build=True),
    Option("timing", "--timing", str, "Timeline of schedule.json: the paper's counting (load, then compute) or "
           "double buffering (free macros load the next weights while others compute).", default="paper",
           choices=("paper", "overlap"), shapes_build=True, recorded=True),
    Option("conversion", "--conversion", str, "Conversion model of the timeline: the paper's count (a pass's "
           "segments convert one after the other in rounds of one macro's ADCs) or macro-parallel (every macro's "
           "ADCs convert its own columns at once).", default="serial", choices=("serial", "macro-parallel"),
           shapes_build=True, recorded=True, record_default=False),
    Option("infer_batch", "--infer-batch", int, "Inputs per batch: weights loaded once serve the whole batch "
           "(schedule.json timeline, report latency and energy per inference).", default=1, low=1, high=1 << 20,
           shapes_build=True, recorded=True),
    Option("tiling", "--tiling", str, "Wordline tiling: whole input channels per segment, or dense rows.",
           default="channel", choices=("channel", "dense"), passes=("tile-wordlines", "morph-channels"),
           shapes_build=True, recorded=True),
    Option("placement", "--placement", str, "Bitline placement: layers packed back to back, or each on a "
           "fresh macro.", default="packed", choices=("packed", "aligned"),
           passes=("place-bitlines", "morph-channels"), shapes_build=True, recorded=True),
    Option("map_fc", "--map-fc", bool, "Also map Gemm/MatMul layers onto CIM macros.", default=False,
           passes=("select-cim", "morph-channels"), shapes_build=True, recorded=True),
    Option("input_shapes", "--input-shape", dict, "NAME=1,3,32,32 for inputs with symbolic dimensions.",
           shapes_build=True, recorded=True, param="input_shape", repeat=True),
    Option("granularity", "--granularity", str, "One weight/ADC step per layer (paper) or per output column "
           "(ColumnQuant).", default="layer", choices=("layer", "column"),
           passes=(*_QUANT, *_POOL), shapes_build=True, recorded=True),
    Option("weight_method", "--weight-step", str, "Weight step: MSE-optimal, activation-aware MSE (each weight's "
           "error weighted by the mean square of its input on the calibration data) or LSQ initialisation.",
           default="mse", choices=("mse", "aware", "lsq"), passes=_QUANT, shapes_build=True, recorded=True),
    Option("adc_method", "--adc-step", str, "ADC step: MSE-optimal on the partial sums, or that step scaled by the "
           "factor 2^(j/8), |j| <= 4, of least error of the layer's output after its activation (Relu or Clip "
           "bounds; each channel's mean error removed with --bias-correction) on the calibration inputs "
           "(cimc.quant.adc_output).", default="mse", choices=("mse", "output"), passes=_QUANT, shapes_build=True,
           recorded=True, record_default=False),
    Option("bias_correction", "--bias-correction", bool, "Correct each layer's bias by its mean output error on the "
           "calibration data (empirical bias correction).", default=False, passes=_CALIB, shapes_build=True,
           recorded=True),
    Option("adaround", "--adaround", bool, "AdaRound: round each calibrated layer's weights up or down (learned "
           "on the calibration data) so that its output, not each weight, is closest to the float layer's "
           "(cimc.quant.adaround; slower: about 1,000 small optimiser steps per layer).", default=False,
           passes=_QUANT, shapes_build=True, recorded=True, record_default=False),
    Option("weight_digits", "--weight-digits", str, "Digits of bit-sliced weights (w_bits > cell bits): two's "
           "complement (lower digits unsigned, the top one signed) or offset (every digit signed, the offset the top "
           "one has in every column; codes within ±code_max, 119 for 8 bits on 4-bit cells): no large one-signed "
           "partial sums for the ADC (cimc.quant.slicing).", default="twos", choices=("twos", "offset"),
           passes=_QUANT, shapes_build=True, recorded=True, record_default=False),
    Option("equalize", "--equalize", bool, "Cross-layer equalisation before quantization: scale the output "
           "channels of each Conv and the input channels of the Conv after it (through Relu or Clip) so that "
           "their weight ranges match; the float function is unchanged (the 'equalize' pass). With per-column "
           "steps and the shift on, each column's scale remainder is equalised the same way into the next "
           "Conv.", default=False, passes=("quantize",), shapes_build=True, recorded=True, record_default=False),
    Option("calib", "--calib", str, "Calibration data: synthetic, a dataset name (digits, cifar10, mnist), an "
           "image folder (DIR/<class>/*.png), an .npz with x and y, or a folder of .npy inputs.",
           default="synthetic", passes=_CALIB, shapes_build=True, recorded=True),
    Option("calib_size", "--calib-size", int, "Calibration samples.", default=16, low=1, passes=_CALIB,
           shapes_build=True, recorded=True),
    Option("no_shift", "--no-shift", bool, "Keep exact output scales (no power-of-two shift): the same as "
           "--disable scale-to-shift.", default=False, passes=("quantize",), shapes_build=True, recorded=True),
    Option("w_bits", "--w-bits", int, "Weight bits of every layer (default: the macro's cell bits; wider "
           "weights are bit-sliced over cells).", low=2, high=MAX_BITS, passes=_QUANT, shapes_build=True,
           recorded=True),
    Option("a_bits", "--a-bits", int, "Input bits of every layer (default: the macro's DAC bits; wider "
           "inputs are fed bit-serially).", low=1, high=MAX_BITS, passes=_QUANT, shapes_build=True,
           recorded=True),
    Option("adc_bits", "--adc-bits", int, "ADC bits of every layer (default and at most: the macro's).",
           low=2, high=MAX_BITS, passes=_QUANT, shapes_build=True, recorded=True),
    Option("layer_bits", "--bits", dict, "Per-layer bits, JSON or TOML: {layer: {w_bits, a_bits, adc_bits}}.",
           passes=_QUANT, shapes_build=True, recorded=True, param="bits_file", path="file"),
    Option("image_size", "--image-size", int, "Resize the images of an image-folder dataset to SIZE×SIZE "
           "(default: the model's input size).", low=1, high=IMAGE_SIZE, passes=_CALIB, shapes_build=True,
           recorded=True),
    Option("mean", "--mean", str, "Per-channel mean subtracted from images scaled to [0, 1], comma-separated "
           "(one value: every channel).", passes=_CALIB, shapes_build=True, recorded=True),
    Option("std", "--std", str, "Per-channel std dividing images after --mean, comma-separated.", passes=_CALIB,
           shapes_build=True, recorded=True),
    Option("eval_data", "--eval", str, "Data whose test split measures float vs compiled accuracy: a dataset "
           "name, an image folder or an .npz with x and y."),
    Option("eval_size", "--eval-size", int, "Evaluate on at most this many samples.", low=1),
    Option("max_acc_drop", "--max-acc-drop", float, "Largest accuracy drop against the float model, in "
           "top-1 percentage points: with --eval, compile warns above it and names the layers to blame.",
           default=1.0, low=0.0, high=100.0),
    Option("data_root", "--data-root", str, "Folder of the dataset (CIFAR-10 python batches).", passes=_CALIB,
           path="folder"),
    Option("weight_pool", "--weight-pool", int, "Weight-pool compression (docs/weight-pool.md): store this many "
           "shared binary weight vectors once and give every CIM layer an index per vector, a scale and an optional "
           "error term (the pool-weights pass; off by default).", low=1, high=POOL_MAX, passes=_POOL,
           shapes_build=True, recorded=True),
    Option("pool_vector", "--pool-vector", int, f"Length L of the pool's vectors: weight rows per vector, one "
           f"wordline segment each (default {POOL_VECTOR}; at most the macro's wordlines).", low=1, high=4096,
           passes=_POOL, shapes_build=True, recorded=True),
    Option("pool_error_bits", "--pool-error-bits", int, "Error term of --weight-pool: 0 (weights ±α) or 1 (a 1-bit "
           "error vector per position, weights in {±1, ±3}·α; default 0).", low=0, high=1, passes=_POOL,
           shapes_build=True, recorded=True),
    Option("pool_error_prune", "--pool-error-prune", float, "Share of the error vectors of --weight-pool pruned "
           "to 0, those removing the least squared error (default 0).", low=0.0, high=1.0, passes=_POOL,
           shapes_build=True, recorded=True),
    Option("passes", "--passes", tuple, "Comma-separated passes to run instead of the default pipeline "
           "(see 'cimc passes')."),
    Option("disable", "--disable", tuple, "Skip this pass of the pipeline (repeatable, or comma-separated).",
           default=(), repeat=True),
    Option("stop_after", "--stop-after", str, "Run the pipeline up to and including this pass."),
    # resource limits (README "Resource limits"): each refusal's hint names the option that raises it
    Option("max_model_bytes", "--max-model-bytes", int, "Refuse a model file larger than this many bytes, its "
           "external data included (checked before reading).", default=MODEL_BYTES, low=1),
    Option("max_tensor_bytes", "--max-tensor-bytes", int, "Refuse a model with a static tensor (input, "
           "activation or constant-folded weight) over this many bytes, or with more than 4× this many in all.",
           default=TENSOR_BYTES, low=1),
    Option("max_data_bytes", "--max-data-bytes", int, "Refuse an .npy/.npz data file (--calib, --eval) larger "
           "than this many bytes, or an .npz that unpacks to more.", default=DATA_FILE_BYTES, low=1),
)
#: Every option by name, in declaration order.
OPTIONS: dict[str, Option] = {o.name: o for o in _DECLARED}


def option(name: str) -> Option:
    """The declaration of ``name``; a ``UsageError`` listing the options when there is none."""
    found = OPTIONS.get(name)
    if found is None:
        raise UsageError(f"unknown option '{name}'", hint=f"options: {', '.join(OPTIONS)}")
    return found


def validate(name: str, value: Any, where: str | None = None) -> Any:
    """``value`` checked against the declaration of ``name`` (``Option.validate``)."""
    return option(name).validate(value, where)


def validate_bits(entry: Any, where: str) -> dict[str, int]:
    """A per-layer bits entry (``{w_bits?, a_bits?, adc_bits?}``, at least one key) checked."""
    if not isinstance(entry, dict) or not entry or set(entry) - set(BIT_KEYS):
        raise UsageError(f"{where} needs some of {', '.join(BIT_KEYS)} and nothing else")
    return {str(k): validate(str(k), v, f"{where}: {k}") for k, v in entry.items()}


def passes_options(pass_name: str) -> tuple[str, ...]:
    """The names of the options pass ``pass_name`` reads."""
    return tuple(o.name for o in _DECLARED if pass_name in o.passes)


def recorded() -> tuple[Option, ...]:
    """The options the manifest records (``CompileOptions.public``)."""
    return tuple(o for o in _DECLARED if o.recorded)

