"""The code blocks of README.md and docs/*.md, and how each is run (tests/test_docs_run.py).

A fenced block's language decides what it is: ``bash``/``sh``/``shell``/``console`` blocks are
commands, ``python`` blocks are programs, ``text``/``toml``/``json``/``mermaid`` blocks are not
run. Notes for the test are HTML comments right above the fence (invisible when rendered)::

    <!-- doc-test: slow -->                      heavy: runs with -m slow
    <!-- doc-test: torch -->                     needs torch (found by itself for the zoo's paper
                                                 models, qat, morph, search and cimc.train)
    <!-- doc-test: skip REASON -->               not run, and why
    <!-- doc-test: skip-lines TEXT | REASON -->  the block's lines that contain TEXT are not run
    <!-- doc-test: given NAME ... -->            the user's files the block assumes (``FIXTURES``)
    <!-- doc-test: scale OLD => NEW -->          a smaller value of a flag or variable the block shows
    <!-- doc-test: needs MODULE -->              an optional package it needs (skipped without it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

SHELL = frozenset({"bash", "sh", "shell", "console"})
PYTHON = frozenset({"python"})
INERT = frozenset({"text", "toml", "json", "mermaid"})

#: The user's files a block may assume (``given``); tests/test_docs_run.py makes them.
FIXTURES = frozenset({"model.onnx", "dynamic.onnx", "model.qdq.onnx", "imgs", "x.npy"})

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*$")
_NOTE = re.compile(r"^<!-- doc-test: (.+?) -->$")
#: A line that starts a command: an indented block holding one must be a fenced, tested block.
COMMAND = re.compile(r"^\s*(?:\$ )?(?:cimc|python3?|pip|nice|torchrun|[A-Z_]+=\S*)\s")
#: What needs torch (the ``train`` extra) when a block runs.
_TORCH = re.compile(r"\b(vgg9|vgg16|resnet18|cimc (?:qat|morph|search)|--train|--morph"
                    r"|cimc\.(?:train|morph\.loop|search)|import torch)\b")


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its notes."""

    path: Path
    line: int
    lang: str
    code: str
    notes: tuple[str, ...] = ()
    skip: str | None = None
    skip_lines: tuple[tuple[str, str], ...] = ()
    given: tuple[str, ...] = ()
    scale: tuple[tuple[str, str], ...] = ()
    slow: bool = False
    torch: bool = False
    needs: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list, compare=False)

    @property
    def id(self) -> str:
        return f"{_name(self.path)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in SHELL | PYTHON and self.skip is None

    def script(self) -> str:
        """The text that runs: a console block's `$ ` lines, less the skipped lines, scaled values replaced."""
        lines = self.code.splitlines()
        if self.lang == "console":
            lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
        lines = [ln for ln in lines if not any(text in ln for text, _ in self.skip_lines)]
        text = "\n".join(lines) + "\n"
        for old, new in self.scale:
            text = text.replace(old, new)
        return text


@dataclass
class _Notes:
    skip: str | None = None
    skip_lines: list[tuple[str, str]] = field(default_factory=list)
    given: list[str] = field(default_factory=list)
    scale: list[tuple[str, str]] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    slow: bool = False
    torch: bool = False


def _parse_notes(notes: list[str], problems: list[str]) -> _Notes:
    out = _Notes()
    for note in notes:
        key, _, value = note.partition(" ")
        value = value.strip()
        left, bar, right = (s.strip() for s in value.partition("|"))
        old, arrow, new = (s.strip() for s in value.partition("=>"))
        if key == "slow" and not value:
            out.slow = True
        elif key == "torch" and not value:
            out.torch = True
        elif key == "skip" and value:
            out.skip = value
        elif key == "skip-lines" and bar and left and right:
            out.skip_lines.append((left, right))
        elif key == "given" and value and set(value.split()) <= FIXTURES:
            out.given.extend(value.split())
        elif key == "needs" and value:
            out.needs.extend(value.split())
        elif key == "scale" and arrow and old:
            out.scale.append((old, new))
        else:
            problems.append(f"bad note {note!r}")
    return out


def _block(path: Path, line: int, lang: str, body: list[str], notes: list[str]) -> Block:
    problems: list[str] = []
    parsed = _parse_notes(notes, problems)
    code = "\n".join(body)
    block = Block(path, line, lang, code, tuple(notes), skip=parsed.skip, skip_lines=tuple(parsed.skip_lines),
                  given=tuple(parsed.given), scale=tuple(parsed.scale), needs=tuple(parsed.needs), slow=parsed.slow,
                  torch=parsed.torch or bool(_TORCH.search(code)), problems=problems)
    for text, _ in block.skip_lines:
        if not any(text in ln for ln in body):
            problems.append(f"skip-lines {text!r} matches no line")
    for old, _ in block.scale:
        if old not in code:
            problems.append(f"scale {old!r} is not in the block")
    if not lang:
        problems.append("a fence without a language: bash, python, or text for what does not run")
    elif lang not in SHELL | PYTHON | INERT:
        problems.append(f"unknown block language {lang!r}")
    if notes and lang in INERT:
        problems.append("doc-test notes on a block that does not run")
    return block


def _indented_commands(path: Path, lines: list[str], fenced: set[int]) -> list[str]:
    """Indented (unfenced) code blocks that start with a command: they would escape the test."""
    return [f"{_name(path)}:{i + 1}: an indented command block; fence it (```bash)"
            for i, ln in enumerate(lines)
            if i not in fenced and ln.startswith("    ") and (i == 0 or not lines[i - 1].strip()) and COMMAND.match(ln)]


def parse(path: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of one markdown file, and what is wrong with its blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    fenced: set[int] = set()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, start = match.group(1), match.group(2), i
        notes = []
        j = start - 1
        while j >= 0 and (note := _NOTE.match(lines[j].strip())):
            notes.insert(0, note.group(1))
            j -= 1
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            i += 1
        fenced.update(range(start, i + 1))
        blocks.append(_block(path, start + 1, lang, lines[start + 1:i], notes))
        i += 1
    problems = [f"{b.id}: {p}" for b in blocks for p in b.problems]
    return blocks, problems + _indented_commands(path, lines, fenced)


def all_blocks() -> tuple[list[Block], list[str]]:
    blocks: list[Block] = []
    problems: list[str] = []
    for path in DOCS:
        found, wrong = parse(path)
        blocks += found
        problems += wrong
    return blocks, problems
