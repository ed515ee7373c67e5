"""What every ``cimc`` command shares: the global ``State`` (``--debug``, ``--json``), the
``guarded`` wrapper that turns a ``CimcError`` into one line on stderr (or a JSON object with
``--json``) and its fixed exit code, the click group that does the same for click's own
usage errors, and option parsers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import click

from cimc.errors import CimcError, UsageError
from cimc.safe_text import safe_message, terminal_text

F = TypeVar("F", bound=Callable[..., Any])
MAX_DIM = 2**62  # an ONNX dimension is an int64; the memory budget judges the rest


def echo(message: Any = "", err: bool = False, nl: bool = True) -> None:
    """``click.echo`` of text that may hold names from a build or a model: control
    characters escaped (``terminal_text``), so no output can drive the terminal."""
    click.echo(terminal_text(str(message)), err=err, nl=nl)


class FiniteFloat(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and ±inf (``--lr nan`` is a usage error)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not -float("inf") < number < float("inf"):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class State:
    def __init__(self, debug: bool, as_json: bool) -> None:
        self.debug = debug
        self.as_json = as_json


def guarded(fn: F) -> F:
    """Run a command, turning errors into the documented one-line/JSON form and exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state: State = click.get_current_context().find_object(State) or State(False, False)
        try:
            return fn(*args, **kwargs)
        except CimcError as exc:
            _fail(state, exc)
        except (KeyboardInterrupt, BrokenPipeError, click.exceptions.Exit, click.ClickException):
            raise  # click handles these (a closed pipe: quiet exit 1)
        except Exception as exc:
            if state.debug:
                raise
            _fail(state, CimcError(f"internal error: {type(exc).__name__}: {exc}",
                                   hint="rerun with --debug and report the traceback"))

    return wrapper  # type: ignore[return-value]


def _fail(state: State, exc: CimcError) -> None:
    if state.debug:
        import traceback

        traceback.print_exception(exc)
    if state.as_json:
        click.echo(json.dumps(_safe_json(exc.to_json()), sort_keys=True))
    else:
        click.echo(f"cimc: error [{exc.kind}]: {exc}", err=True)
    sys.exit(exc.exit_code)


def _safe_json(value: Any) -> Any:
    """``value`` with every string (names from the model among them) shortened and escaped."""
    if isinstance(value, str):
        return safe_message(value)
    if isinstance(value, dict):
        return {safe_message(str(k)): _safe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe_json(v) for v in value]
    return value


_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class CimcGroup(click.Group):
    """A click group whose parse errors (bad options, unknown commands, in any subcommand) also
    come out as one ``cimc: error [usage]`` line (or a JSON object with ``--json``), exit 2."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        if parent is None:
            args = hoist_global_flags(args)
        with _one_line_click_errors(lambda: State("--debug" in args, "--json" in args)):
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        def state() -> State:
            found = ctx.find_object(State)
            return found or State(bool(ctx.params.get("debug")), bool(ctx.params.get("as_json")))

        with _one_line_click_errors(state):
            return super().invoke(ctx)


GLOBAL_FLAGS = ("--json", "--debug")


def hoist_global_flags(args: list[str]) -> list[str]:
    """``cimc compile x --json`` means ``cimc --json compile x``: the global flags (no value, no
    subcommand has one of the same name) are moved to the front wherever they appear before a
    ``--`` that ends the options."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return flags + rest + args[end:]


@contextmanager
def _one_line_click_errors(state: Callable[[], State]) -> Iterator[None]:
    try:
        yield
    except _NO_ARGS_IS_HELP:  # a bare ``cimc`` or ``cimc zoo`` prints the help
        raise
    except click.UsageError as exc:
        name = exc.ctx.command_path if exc.ctx is not None else "cimc"
        _fail(state(), UsageError(exc.format_message(), hint=f"see '{name} --help'"))
    except click.ClickException as exc:
        error = CimcError(exc.format_message())
        error.exit_code = exc.exit_code
        _fail(state(), error)


def parse_shapes(values: tuple[str, ...]) -> dict[str, tuple[int, ...]] | None:
    """``NAME=1,3,32,32`` pairs → dict; a bare ``1,3,32,32`` applies to the only input ('')."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise UsageError(f"bad --input-shape '{value}'", hint="use NAME=1,3,32,32") from None
        if not shape or min(shape) < 1 or max(shape) > MAX_DIM:
            raise UsageError(f"bad --input-shape '{value}': dimensions must be positive and at most 2^62")
        shapes[name] = shape
    return shapes or None
