"""Reading the files cimc is given, all of which are untrusted: one way to open, bound and parse.

Every file cimc reads (a model, its external data, each file of a build directory, ``--calib`` /
``--eval`` / ``--inputs`` arrays, ``--bits`` / ``--macro`` files, sweep configs and results)
goes through ``read_regular``:

* **links**: with ``links=False`` (a build's files) any symbolic link is refused before it is
  opened; otherwise a link may point anywhere inside ``root`` (by default the file's own
  folder), and one whose target leaves it is a ``SecurityError``;
* **kind**: the file is opened non-blocking (``O_NONBLOCK``, ``O_NOFOLLOW``) and checked with
  ``fstat`` on that descriptor: a FIFO, socket or device is refused without a byte read, so
  it never blocks;
* **size**: its size is compared with the caller's limit (``cimc.limits``) before anything is
  read, and exactly the size found is read (a file that grows meanwhile is refused);
* **nesting**: ``load_json`` / ``load_toml`` measure how deeply arrays and objects nest with a
  linear scan before the parser runs (strings and comments skipped), so a 100,000-deep
  document is a one-line typed error, never a ``RecursionError``; the parsed value is checked
  again (TOML's dotted keys nest without brackets).

``refuse_special_output`` is the matching rule for paths cimc writes: an existing FIFO or
device is refused.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cimc.errors import CimcError, SecurityError, UsageError
from cimc.limits import NESTING_DEPTH

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 24  # bytes scanned per numpy step of the nesting count (bounded scratch memory)
# A string always matches from its opening quote to its closing one or to the end, so the scan
# is linear even on an unterminated string full of escaped quotes.
_JSON_STRING = re.compile(rb'"(?>[^"\\]++|\\.?)*+(?:"|\Z)', re.S)
_TOML_SKIP = re.compile(rb'"""(?s:.*?)(?:"""|\Z)|\'\'\'(?s:.*?)(?:\'\'\'|\Z)|"(?>[^"\\\n]++|\\.?)*+(?:"|$)'
                        rb"|'[^'\n]*+(?:'|$)|#[^\n]*+", re.M | re.S)
# The key part of a TOML line or inline-table entry, and a table header: each dot there nests.
_TOML_KEYS = re.compile(rb"(?:^|[{,])[^=\n,{}\[\]]*=|^[ \t]*\[\[?[^\]\n,]*", re.M)


def read_regular(path: Path, *, limit: int, error: type[CimcError] = UsageError, root: Path | None = None,
                 links: bool = True, too_big: type[CimcError] | None = None, hint: str | None = None,
                 what: str | None = None) -> bytes:
    """The bytes of the regular file ``path`` (module doc), at most ``limit`` of them.

    ``error`` is raised for a file that cannot be opened, is not regular or changes while it is
    read; ``too_big`` (default ``error``, with ``hint``) when it holds more than ``limit``
    bytes; ``SecurityError`` for a link out of ``root``. ``what`` names the file in messages
    (default its name)."""
    name = what or path.name
    with _open_regular(path, limit, error, root, links, too_big, hint, name) as (fh, size):
        try:
            data = fh.read(size + 1)
        except OSError as exc:
            raise error(f"cannot read {name}: {exc.strerror or exc}") from exc
    if len(data) != size:
        raise error(f"{name} changed while it was read")
    return data


def read_span(path: Path, offset: int, count: int, *, error: type[CimcError] = UsageError, root: Path | None = None,
              what: str | None = None) -> bytes:
    """``count`` bytes at ``offset`` of the regular file ``path`` (checked like ``read_regular``,
    the span against its size): what an external tensor needs, and no more."""
    name = what or path.name
    with _open_regular(path, offset + count, error, root, True, None, None, name, span=True) as (fh, _):
        fh.seek(offset)
        data = fh.read(count)
    if len(data) != count:
        raise error(f"{name} ended early")
    return data


def check_regular(path: Path, *, limit: int, error: type[CimcError] = UsageError, root: Path | None = None) -> int:
    """The size of ``path`` after the checks of ``read_regular``, nothing read: for a library that
    opens the file itself (safetensors' ``safe_open``)."""
    with _open_regular(path, limit, error, root, True, None, None, path.name) as (_, size):
        return size


@contextmanager
def _open_regular(path: Path, limit: int, error: type[CimcError], root: Path | None, links: bool,
                  too_big: type[CimcError] | None, hint: str | None, name: str,
                  span: bool = False) -> Iterator[tuple[BinaryIO, int]]:
    """The open file and its size, once it is known regular and within ``limit`` (``span``:
    at least ``limit`` bytes long)."""
    real = _target(path, root, links, error, name)
    try:
        fd = os.open(real, _FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{name} is a symbolic link: refused") from exc
        raise error(f"cannot read {name}: {exc.strerror or exc}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # checked before fdopen, which refuses a folder with its own error
        os.close(fd)
        raise error(f"{name} is not a regular file")
    size = info.st_size
    with os.fdopen(fd, "rb") as fh:
        if span and size < limit:
            raise error(f"{name} is {size:,} bytes, too short for the {limit:,} bytes it should hold")
        if not span and size > limit:
            raise (too_big or error)(f"{name} is {size} bytes, more than the limit of {limit} bytes",
                                     hint=hint, details={"size": size, "limit": limit})
        yield fh, size


def _target(path: Path, root: Path | None, links: bool, error: type[CimcError], name: str) -> Path:
    """The path to open: ``path`` itself (no link allowed), or its target inside ``root``."""
    if not links:
        if os.path.islink(path):
            raise error(f"{name} is a symbolic link: refused (the file must be a regular file of its folder)")
        return path
    folder = Path(os.path.abspath(path)).parent if root is None else root
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    if os.path.islink(path) and real != base and base not in real.parents:
        raise SecurityError(f"{name} is a link to a file outside its folder {folder.name or folder}",
                            hint="copy the file into the folder")
    return real


def refuse_special_output(path: Path) -> None:
    """``UsageError`` when ``path`` exists and is a FIFO, socket or device (cimc never writes to one)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise UsageError(f"output {path.name} is not a regular file (a FIFO, socket or device): refused")


# -- nesting -------------------------------------------------------------------------------------
def bracket_depth(data: bytes, skip: re.Pattern[bytes] = _JSON_STRING) -> int:
    """The deepest nesting of ``[``/``{`` in ``data`` outside what ``skip`` matches (strings,
    comments): the running sum of +1 per opening and −1 per closing bracket, at its maximum.
    Linear: a regex pass, then a numpy cumulative sum over chunks."""
    if data.count(b"[") + data.count(b"{") <= NESTING_DEPTH:
        return data.count(b"[") + data.count(b"{")  # an upper bound, already small enough
    bare = skip.sub(b"", data)
    depth = deepest = 0
    for start in range(0, len(bare), _CHUNK):
        c = np.frombuffer(bare, np.uint8, min(_CHUNK, len(bare) - start), start)
        delta = ((c == 91) | (c == 123)).view(np.int8) - ((c == 93) | (c == 125)).view(np.int8)  # [{ and ]}
        run = np.cumsum(delta, dtype=np.int32)  # a chunk is < 2^31 bytes
        deepest = max(deepest, depth + int(run.max()))
        depth += int(run[-1])
    return deepest


def value_depth(value: Any) -> int:
    """How deeply lists and dicts nest in a parsed value (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level > NESTING_DEPTH:
            break
        stack.extend((c, level + 1) for c in children)
    return deepest


def check_depth(data: bytes, name: str, error: type[CimcError], skip: re.Pattern[bytes] = _JSON_STRING) -> None:
    """``error`` when arrays/objects nest deeper than ``NESTING_DEPTH`` in ``data``."""
    depth = bracket_depth(data, skip)
    if depth > NESTING_DEPTH:
        raise error(f"{name} nests arrays or tables {depth:,} deep, more than the limit of {NESTING_DEPTH}")


def load_json(data: bytes | str, name: str, error: type[CimcError] = UsageError) -> Any:
    """Parse JSON text of bounded nesting; ``error`` naming ``name`` otherwise."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    check_depth(raw, name, error)
    try:
        return json.loads(raw)
    except RecursionError as exc:  # not reached after check_depth; kept as the last guard
        raise error(f"{name} nests too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise error(f"{name} is not valid JSON: {exc}") from exc


def toml_key_depth(data: bytes) -> int:
    """The most dots in one TOML key or table header (strings and comments aside): a dotted
    key ``a.b.c`` nests three tables deep without a bracket (and tomllib's bookkeeping of
    dotted keys is quadratic in their length)."""
    bare = _TOML_SKIP.sub(b'""', data)
    return max((m.group().count(b".") for m in _TOML_KEYS.finditer(bare)), default=0)


def load_toml(data: bytes, name: str, error: type[CimcError] = UsageError) -> dict[str, Any]:
    """Parse TOML text of bounded nesting: brackets and dotted keys are measured before the
    parser runs, the parsed tables after."""
    check_depth(data, name, error, _TOML_SKIP)
    if data.count(b".") > NESTING_DEPTH and toml_key_depth(data) >= NESTING_DEPTH:
        raise error(f"{name} has a dotted key or table header more than {NESTING_DEPTH} deep")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise error(f"{name} nests too deeply") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{name} is not valid TOML: {exc}") from exc
    if value_depth(doc) > NESTING_DEPTH:
        raise error(f"{name} nests tables more than {NESTING_DEPTH} deep")
    return doc


def check_safetensors(data: bytes, name: str, error: type[CimcError] = UsageError) -> None:
    """The header of a safetensors file (``u64`` length, then that many bytes of JSON) lies
    within ``data`` and nests no deeper than ``NESTING_DEPTH``; the library checks the rest
    (every tensor's offsets within the file) before it allocates."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 <= size <= len(data) - 8:
        raise error(f"{name} is not a valid safetensors file: its header length {size} does not fit its "
                    f"{len(data)} bytes")
    check_depth(data[8:8 + size], f"{name}'s header", error)


def load_document(data: bytes, name: str, error: type[CimcError] = UsageError) -> Any:
    """JSON or TOML by the file name's suffix (``.toml``: TOML, else JSON)."""
    return load_toml(data, name, error) if name.lower().endswith(".toml") else load_json(data, name, error)
