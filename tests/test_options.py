"""The options model: every declared option's click form, ``CompileOptions`` and the manifest
come from ``cimc.options``, and a value is valid everywhere or nowhere (``--w-bits 1``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cimc.api import CompileOptions
from cimc.cli.compile import compile_cmd
from cimc.cli.emulate import emulate_cmd
from cimc.cli.main import main
from cimc.cli.morph import morph_cmd
from cimc.cli.options import click_type
from cimc.cli.qat import qat_cmd
from cimc.cli.quant import read_bits
from cimc.cli.search import search_cmd
from cimc.cli.sweep import sweep_cmd
from cimc.errors import UsageError
from cimc.options import OPTIONS, Option, recorded, validate
from cimc.search.space import SearchSpace
from cimc.sweep.config import parse_config

COMMANDS = {"compile": compile_cmd, "qat": qat_cmd, "morph": morph_cmd, "search": search_cmd, "sweep": sweep_cmd,
            "emulate": emulate_cmd}
BY_FLAG = {o.flag: o for o in OPTIONS.values()}
#: A command's own default for a declared option (same type and range).
OWN_DEFAULTS = {("search", "calib"): None, ("search", "calib_size"): 64, ("search", "max_acc_drop"): 0.5}


def _same_type(param: click.Option, o: Option) -> bool:
    want = click_type(o)
    if want is None:
        return param.is_flag if o.kind is bool else isinstance(param.type, click.types.StringParamType)
    return type(param.type) is type(want) and param.type.to_info_dict() == want.to_info_dict()


def _declared_params() -> list[tuple[str, click.Option, Option]]:
    found = []
    for command, cmd in COMMANDS.items():
        for param in cmd.params:
            decl = next((BY_FLAG[f] for f in param.opts if f in BY_FLAG), None)
            if isinstance(param, click.Option) and decl is not None:
                found.append((command, param, decl))
    return found


def test_commands_share_the_declared_flags() -> None:
    seen = {(command, decl.name) for command, _, decl in _declared_params()}
    for command in ("compile", "qat", "search"):
        assert {(command, n) for n in ("macro", "tiling", "map_fc", "w_bits")} - seen <= {(command, "w_bits")}
    assert ("compile", "weight_method") in seen and ("morph", "placement") in seen


@pytest.mark.parametrize(("command", "param", "decl"), _declared_params(),
                         ids=lambda x: x if isinstance(x, str) else getattr(x, "name", ""))
def test_click_options_are_derived_from_the_declarations(command: str, param: click.Option, decl: Option) -> None:
    assert _same_type(param, decl)
    assert param.name == (decl.param or decl.name)
    if decl.kind not in (dict, tuple):
        want = OWN_DEFAULTS.get((command, decl.name), decl.default)
        assert param.default == want or (decl.kind is bool and not param.default and not want)
    if (command, decl.name) not in OWN_DEFAULTS and not (command == "search" and decl.name == "eval_size"):
        assert param.help == decl.help


def test_compile_options_defaults_and_public_come_from_the_declarations() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(CompileOptions)}
    for o in OPTIONS.values():
        if o.name in defaults and o.name != "macro":
            assert defaults[o.name] == o.default, o.name
    assert set(CompileOptions().public()) == {o.name for o in recorded()
                                              if (o.default is not None or o.kind is dict) and o.record_default}
    given = CompileOptions(w_bits=3, a_bits=5, adc_bits=4, image_size=8, mean="0.5", std=(0.25,), weight_pool=16,
                           pool_vector=8, pool_error_bits=1, pool_error_prune=0.5, equalize=True, adaround=True,
                           weight_digits="offset", adc_method="output",
                           conversion="macro-parallel")
    assert set(given.public()) == {o.name for o in recorded()}
    assert given.public()["mean"] == [0.5] and given.public()["std"] == [0.25] and given.public()["image_size"] == 8
    assert all(o.shapes_build for o in recorded())


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.torch  # QuantConfig is the training hook's
@pytest.mark.parametrize(("key", "flag"), [("w_bits", "--w-bits"), ("adc_bits", "--adc-bits")])
def test_one_bit_weights_and_adc_codes_are_refused_everywhere(key: str, flag: str, tmp_path: Path) -> None:
    """A 1-bit narrow signed code is always 0: compile, qat, search, sweep, bits files, the
    API and the QAT config all refuse it, with the same message."""
    from cimc.train.config import QuantConfig

    message = rf"{key}(\[\d\])? = 1 must be an integer in 2\.\.16"
    for command in (["compile", "tiny_cnn"], ["qat", "tiny_cnn", "--data", "synthetic"]):
        code, out = _invoke(*command, flag, "1", "-o", str(tmp_path / "x"))
        assert code == 2 and "1 is not in the range 2<=x<=16" in out, out
    with pytest.raises(UsageError, match=message):
        CompileOptions(**{key: 1})
    with pytest.raises(UsageError, match=message):
        QuantConfig(**{key: 1})
    with pytest.raises(UsageError, match=message):
        parse_config({"model": "tiny_cnn", "axes": {key: [4, 1]}})
    bits = tmp_path / "bits.json"
    bits.write_text(json.dumps({"c1": {key: 1}}))
    with pytest.raises(UsageError, match=message):
        read_bits(bits)
    choices = {"w_bits": "w_choices", "adc_bits": "adc_choices"}[key]
    with pytest.raises(UsageError, match=r"within 2\.\.16"):
        SearchSpace(("c1",), **{choices: (1, 4)})  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


@pytest.mark.torch  # QuantConfig is the training hook's
def test_two_bits_are_valid_everywhere(tmp_path: Path) -> None:
    from cimc.train.config import QuantConfig

    assert validate("w_bits", 2) == 2 and validate("adc_bits", 2) == 2 and validate("a_bits", 1) == 1
    CompileOptions(w_bits=2, adc_bits=2, a_bits=1)
    QuantConfig(w_bits=2, adc_bits=2, a_bits=1)
    assert parse_config({"model": "tiny_cnn", "axes": {"w_bits": [2], "adc_bits": [2]}}).axes["w_bits"] == [2]
    bits = tmp_path / "bits.toml"
    bits.write_text("[c1]\nw_bits = 2\nadc_bits = 2\n")
    assert read_bits(bits) == {"c1": {"w_bits": 2, "adc_bits": 2}}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("tiling", "diagonal", "tiling = 'diagonal' is not one of channel, dense"),
    ("calib_size", 0, "calib_size = 0 must be an integer >= 1"),
    ("map_fc", "yes", "map_fc = 'yes' must be true or false"),
    ("nope", 1, "unknown option 'nope'"),
])
def test_validate_refuses_in_one_place(name: str, value: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate(name, value)


def test_the_derivation_check_sees_a_redeclared_option() -> None:
    """Not vacuous: a hand-written ``--w-bits 1..16`` or ``--tiling`` with other choices differs."""
    assert not _same_type(click.Option(["--w-bits"], type=click.IntRange(1, 16)), OPTIONS["w_bits"])
    assert not _same_type(click.Option(["--tiling"], type=click.Choice(["channel"])), OPTIONS["tiling"])
    assert _same_type(click.Option(["--w-bits"], type=click.IntRange(2, 16)), OPTIONS["w_bits"])
