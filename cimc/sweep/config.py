"""The sweep configuration (TOML): which model, which axes, how to sample, what to measure.

    model = "digits_cnn"            # zoo name, or an ONNX path (relative to the config file)
    mode = "grid"                   # or "random" (+ samples, seed)
    eval = "digits"                 # optional: float vs compiled top-1 on this test split
    objective = "latency"           # what the Pareto set minimises (cimc.cost.objective)
    [fixed]                         # values shared by every point (any axis name)
    bitline_budget = 512
    [axes]                          # lists of values; random mode also takes {min, max}
    w_bits = [4, 8]
    [axes.macro]                    # MacroSpec fields, over a preset
    preset = ["paper", "small-64"]

Axis names are flat (``macro.adc_bits`` is the macro's ADC, ``adc_bits`` every layer's); the
compile options among them (``COMPILE_AXES``) are checked by their ``cimc.options``
declarations. A bad config raises a ``UsageError`` naming the key; nothing is run or written
before it validates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cimc.cost.objective import OBJECTIVES
from cimc.errors import UsageError
from cimc.limits import OPTIONS_FILE_BYTES
from cimc.macro import FIELD_BOUNDS, PRESETS, check_field
from cimc.options import OPTIONS, validate
from cimc.untrusted import load_toml, read_regular

Check = Callable[[str, Any], Any]


def _int(low: int, high: int | None = None) -> Check:
    def check(key: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
            bound = f"{low}..{high}" if high else f">= {low}"
            raise UsageError(f"sweep config: {key} = {value!r} must be an integer {bound}")
        return value
    return check


def _float(key: str, value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < float("inf"):  # NaN too
        raise UsageError(f"sweep config: {key} = {value!r} must be a number >= 0 and finite")
    return float(value)


def _macro_field(name: str) -> Check:
    """A numeric ``MacroSpec`` field, held to its ``cimc.macro.FIELD_BOUNDS`` range."""
    def check(key: str, value: Any) -> int | float:
        return check_field(name, value, "sweep config", key)
    return check


def _data_source(key: str, value: Any) -> str:
    """A dataset argument (``cimc.data.sources``): a built-in name or a path."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"sweep config: {key} = {value!r} must be a dataset name or a path")
    return value


def _choice(*allowed: Any) -> Check:
    def check(key: str, value: Any) -> Any:
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise UsageError(f"sweep config: {key} = {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    return check


def _declared(name: str) -> Check:
    def check(key: str, value: Any) -> Any:
        return validate(name, value, f"sweep config: {key}")
    return check


#: The compile options a point may set (``CompileOptions`` fields, checked by ``cimc.options``).
COMPILE_AXES = ("bitline_budget", "w_bits", "a_bits", "adc_bits", "tiling", "placement", "granularity",
                "weight_method", "map_fc", "no_shift", "timing", "infer_batch", "conversion")
#: Every axis (also usable under [fixed]) and its value check.
AXES: dict[str, Check] = {
    "macro.preset": _choice(*PRESETS),
    **{f"macro.{name}": _macro_field(name) for name in FIELD_BOUNDS},  # bounded: cimc.macro.FIELD_BOUNDS
    **{name: _declared(name) for name in COMPILE_AXES},
    "morph_lambda": _float,
}
TOP_KEYS = ("model", "mode", "samples", "seed", "eval", "eval_size", "calib", "calib_size", "data_root", "train",
            "fixed", "axes", "training", "image_size", "mean", "std", "objective")
#: The image preprocessing of ``calib``, ``eval`` and ``training.data`` (``cimc.data.preprocess``):
#: part of every point's key only when given.
PREPROCESS_KEYS = ("image_size", "mean", "std")
TRAINING: dict[str, tuple[Check, Any]] = {
    "data": (_data_source, "digits"), "seed_epochs": (_int(0), 3),
    "rounds": (_int(1), 1), "epochs": (_int(1), 1), "batch_size": (_int(1), 64), "seed": (_int(0), 0),
}


@dataclass(frozen=True)
class Range:
    """A random-mode axis drawn uniformly from ``[low, high]`` (integers when both are)."""

    low: float
    high: float
    integer: bool


@dataclass(frozen=True)
class SweepConfig:
    model: str
    mode: str = "grid"
    samples: int | None = None
    seed: int = 0
    axes: dict[str, list[Any] | Range] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # eval, calib, train: part of every point's key
    data_root: str | None = None  # where datasets live: not part of the key
    objective: str = "latency"  # what the Pareto set minimises (cimc.cost.objective): not part of the key


def load_config(path: Path, *, train: bool = False) -> SweepConfig:
    """Read and validate a TOML sweep config (``train``: the ``--train`` flag)."""
    name = f"sweep config {path.name}"
    doc = load_toml(read_regular(path, limit=OPTIONS_FILE_BYTES, what=name), name)
    return parse_config(doc, base=path.parent, train=train)


def parse_config(doc: dict[str, Any], base: Path | None = None, *, train: bool = False) -> SweepConfig:
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise UsageError(f"sweep config: unknown key(s) {', '.join(unknown)}", hint=f"known: {', '.join(TOP_KEYS)}")
    mode = _choice("grid", "random")("mode", doc.get("mode", "grid"))
    samples = _int(1)("samples", doc["samples"]) if "samples" in doc else None
    if mode == "random" and samples is None:
        raise UsageError("sweep config: mode = \"random\" needs samples = N")
    axes = {k: _axis(k, v, mode) for k, v in _flat(_table(doc, "axes")).items()}
    fixed = {k: _value(f"fixed.{k}", k, v) for k, v in _flat(_table(doc, "fixed")).items()}
    both = sorted(set(axes) & set(fixed))
    if both:
        raise UsageError(f"sweep config: {', '.join(both)} is both an axis and fixed")
    _check_morph(axes, fixed)
    return SweepConfig(model=_model(doc, base), mode=mode, samples=samples,
                       seed=_int(0)("seed", doc.get("seed", 0)), axes=axes, fixed=fixed,
                       settings=_settings(doc, train), data_root=_opt_str(doc, "data_root"),
                       objective=_objective(doc.get("objective", "latency")))


def _objective(value: Any) -> str:
    if not isinstance(value, str) or value not in OBJECTIVES:
        raise UsageError(f"sweep config: objective = {value!r} is not one of {', '.join(OBJECTIVES)}")
    return value


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"sweep config: {key} must be a table ([{key}])")
    return value


def _flat(table: dict[str, Any]) -> dict[str, Any]:
    """``{"macro": {"bitlines": [..]}}`` → ``{"macro.bitlines": [..]}``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == "macro" and isinstance(value, dict):
            out.update({f"macro.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _value(where: str, name: str, value: Any) -> Any:
    if name not in AXES:
        raise UsageError(f"sweep config: unknown axis '{where}'", hint=f"axes: {', '.join(AXES)}")
    return AXES[name](where, value)


def _axis(name: str, value: Any, mode: str) -> list[Any] | Range:
    where = f"axes.{name}"
    if name not in AXES:
        raise UsageError(f"sweep config: unknown axis '{where}'", hint=f"axes: {', '.join(AXES)}")
    if isinstance(value, dict) and mode == "random":
        return _range(where, name, value)
    if not isinstance(value, list):
        form = "a list or {min, max}" if mode == "random" else "a list"
        raise UsageError(f"sweep config: {where} must be {form}, got {type(value).__name__}")
    if not value:
        raise UsageError(f"sweep config: {where} is an empty list")
    values = [_value(f"{where}[{i}]", name, v) for i, v in enumerate(value)]
    return list(dict.fromkeys(values))  # duplicates would be the same point


def _range(where: str, name: str, value: dict[str, Any]) -> Range:
    if set(value) != {"min", "max"}:
        raise UsageError(f"sweep config: {where} range must have exactly min and max")
    low, high = (_value(f"{where}.{k}", name, value[k]) for k in ("min", "max"))
    if isinstance(low, str | bool) or low >= high:
        raise UsageError(f"sweep config: {where} needs numeric min < max")
    return Range(low, high, isinstance(low, int) and isinstance(high, int))


def _check_morph(axes: dict[str, Any], fixed: dict[str, Any]) -> None:
    if ("morph_lambda" in axes or "morph_lambda" in fixed) and not ("bitline_budget" in axes
                                                                    or "bitline_budget" in fixed):
        raise UsageError("sweep config: morph_lambda needs a bitline_budget (axis or [fixed])",
                         hint="the morph expands the pruned model to the budget")


def _model(doc: dict[str, Any], base: Path | None) -> str:
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise UsageError("sweep config: model must be a zoo name or an ONNX path")
    import cimc.models as models

    if model in models.available():
        return model
    path = Path(model) if base is None or Path(model).is_absolute() else base / model
    if not path.is_file():
        raise UsageError(f"sweep config: model '{model}' is neither a zoo model nor a file",
                         hint=f"zoo models: {', '.join(models.available())}")
    return str(path)


def _opt_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"sweep config: {key} must be a string")
    return value


def _setting(doc: dict[str, Any], name: str) -> Any:
    """Top-level key ``name`` (a declared option), checked, or its declared default."""
    return validate(name, doc.get(name, OPTIONS[name].default), f"sweep config: {name}")


def _preprocess(doc: dict[str, Any]) -> dict[str, Any]:
    """``image_size``, ``mean`` and ``std`` where given (numbers, lists of numbers or comma text), checked."""
    from cimc.data.preprocess import Preprocess

    given = {k: doc[k] for k in PREPROCESS_KEYS if doc.get(k) is not None}
    if "image_size" in given:
        validate("image_size", given["image_size"], "sweep config: image_size")
    for key in ("mean", "std"):
        if isinstance(given.get(key), int | float) and not isinstance(given[key], bool):
            given[key] = [given[key]]
        if key in given and not isinstance(given[key], str | list):
            raise UsageError(f"sweep config: {key} must be a list of numbers")
    pre = Preprocess.from_options(given.get("image_size"), given.get("mean"), given.get("std"))
    return {k: v for k, v in (("image_size", pre.image_size), ("mean", pre.mean and list(pre.mean)),
                              ("std", pre.std and list(pre.std))) if v is not None}


def _settings(doc: dict[str, Any], train: bool) -> dict[str, Any]:
    flag = _choice(False, True)("train", doc.get("train", False)) or train
    settings = {"eval": _opt_str(doc, "eval"),
                "eval_size": _setting(doc, "eval_size"), "calib": _opt_str(doc, "calib") or OPTIONS["calib"].default,
                "calib_size": _setting(doc, "calib_size"), "train": flag}
    settings.update(_preprocess(doc))
    training = _table(doc, "training")
    unknown = sorted(set(training) - set(TRAINING))
    if unknown:
        raise UsageError(f"sweep config: unknown key(s) training.{', training.'.join(unknown)}",
                         hint=f"known: {', '.join(TRAINING)}")
    if flag:
        settings["training"] = {k: check(f"training.{k}", training.get(k, default))
                                for k, (check, default) in TRAINING.items()}
        settings["training"].update(_preprocess(doc))  # the same images in training as in calib and eval
    return settings
