"""Showing untrusted strings (names from a model file) safely in one-line messages.

A model may name its nodes, tensors and graph anything: ``../../etc/passwd``, a NUL byte,
a newline, terminal escape sequences, bidirectional-override characters or ten kilobytes
of text. Error messages and console output pass such names through here:

* ``printable`` escapes every control, format and line/paragraph-separator character
  (Unicode categories ``Cc``, ``Cf``, ``Zl``, ``Zp``, and lone surrogates) as ``\\xNN`` or
  ``\\uNNNN``, so a message stays one line and cannot drive the terminal;
* ``shorten`` keeps the first 120 and last 40 characters of a string longer than 200 and
  says how long it was: ``LLLL…[10005 chars]…LLLL``;
* ``safe_message`` applies both to a whole message: every quoted ``'…'`` part and every
  whitespace-free run is shortened, and the message is capped at 4,000 characters;
* ``terminal_text`` escapes like ``printable`` but keeps newlines, for multi-line output, and
  ``safe_console`` is a rich console that passes every text segment it renders through it
  (its own styling, emitted after, still works): tables of names from a build or a model
  cannot clear the screen or retitle the terminal.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

MAX_NAME = 200
MAX_MESSAGE = 4000
_HEAD, _TAIL = 120, 40
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_QUOTED = re.compile(rf"'([^']{{{MAX_NAME + 1},}})'")
_RUN = re.compile(rf"\S{{{MAX_NAME + 1},}}")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with control/format characters escaped (``\\x00``, ``\\x1b``, ``\\u202e``)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def shorten(text: str, limit: int = MAX_NAME) -> str:
    """``text`` if at most ``limit`` characters, else its head and tail around its length."""
    if len(text) <= limit:
        return text
    return f"{text[:_HEAD]}…[{len(text)} chars]…{text[-_TAIL:]}"


def one_line(text: str) -> str:
    """A multi-line message from a library (the ONNX checker) joined into one line."""
    return " ".join(text.split())


def safe_name(name: str) -> str:
    """A model-supplied name made fit for a one-line message."""
    return shorten(printable(name))


def safe_message(message: str) -> str:
    """A whole message made one line, with long names shortened and a total cap."""
    text = printable(message)
    if len(text) <= MAX_NAME:
        return text
    text = _QUOTED.sub(lambda m: f"'{shorten(m.group(1))}'", text)
    text = _RUN.sub(lambda m: shorten(m.group(0)), text)
    if len(text) > MAX_MESSAGE:
        text = f"{text[:MAX_MESSAGE]}…[message cut, {len(text)} chars]"
    return text


def terminal_text(text: str) -> str:
    """``printable`` for multi-line text: every unsafe character but ``\\n`` escaped."""
    if text.isascii() and text.replace("\n", "").isprintable():
        return text
    return "\n".join(printable(line) for line in text.split("\n"))


def safe_console(**kwargs: Any) -> Any:
    """A ``rich.console.Console`` (same arguments) whose rendered text is ``terminal_text``."""
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        def _render_buffer(self, buffer: Any) -> str:
            return str(super()._render_buffer(
                [s if s.control else Segment(terminal_text(s.text), s.style) for s in buffer]))

    return SafeConsole(**kwargs)
