"""Reading back ``graph.txt`` (the printer's stable text form of the final IR).

Each node line is ``  %y, … = Op(%x, _, …) {attrs} : [shape] ann=[A,B]  # name``; the
reader keeps what the validator needs to check an execution order: the node's name, op,
input and output tensors, first output shape and whether it is a CIM layer (annotated
``CimLayer``). Lines it cannot read are returned as errors, not skipped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NODE_LINE = re.compile(
    r"^  (?P<outs>%.*?) = (?P<op>[A-Za-z_][\w.]*)\((?P<args>[^)]*)\)(?: \{.*\})? : (?P<shape>\S+)"
    r"(?: ann=\[(?P<ann>[^\]]*)\])?  # (?P<name>.+)$")
SKIP = ("graph ", "  input ", "  const ", "  return ")


@dataclass(frozen=True)
class TextNode:
    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shape: tuple[int, ...] | None
    cim: bool


def _tensors(text: str) -> tuple[str, ...]:
    return tuple(t.strip()[1:] for t in text.split(",") if t.strip().startswith("%"))


def _shape(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in text.strip("[]").split(",") if d)
    except ValueError:
        return None


def parse_graph_text(text: str) -> tuple[list[TextNode], list[str]]:
    """Nodes in file order, and one message per line that is neither a node nor a header."""
    nodes: list[TextNode] = []
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith(SKIP):
            continue
        match = NODE_LINE.match(line)
        if match is None:
            errors.append(f"line {number} is not a node line: {line[:80]!r}")
            continue
        nodes.append(TextNode(match["name"], match["op"], _tensors(match["args"]), _tensors(match["outs"]),
                              _shape(match["shape"]), "CimLayer" in (match["ann"] or "").split(",")))
    return nodes, errors
