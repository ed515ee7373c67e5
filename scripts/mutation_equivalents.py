"""Documented equivalent mutants that ``scripts/mutate.py --equivalents FILE`` does not re-run.

A survivor that ``docs/mutation.md`` explains as equivalent survives every run, and costs a run
the clean time of every test covering its line (20 s for one of the reference executor's). The
file (JSON, a list of entries) remembers each by

    (module, line, the text of the mutated node's lines, operator, description, occurrence)

where *occurrence* counts the earlier mutants of the same line, operator and description (two
``reshape(-1)`` on one line). A mutant whose key is in the file is reported ``survived`` with
the detail ``documented equivalent, not re-run``: it still counts as a survivor in the score
(killed / all), it only saves the time. Any edit of the line (or a line inserted above it)
changes the key: the mutant runs again until its entry is renewed.

Entries are added from a run's report, only for the survivors of the lines named:

    python3 scripts/mutate.py cimc/quant/numerics.py --lines 53 63 \\
        --remember out.json --equivalents docs/mutation_equivalents.json
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from scripts.mutate import NOT_RERUN, Mutant, _sites

Key = tuple[str, int, str, str, str, int]


def site_texts(source: str) -> list[str]:
    """Per mutation site (``_sites`` order): the source text of its node's lines, stripped."""
    lines = source.splitlines()
    out = []
    for node, *_ in _sites(ast.parse(source)):
        first, last = node.lineno, node.end_lineno or node.lineno  # type: ignore[attr-defined]
        out.append("\n".join(line.strip() for line in lines[first - 1:last]))
    return out


def keys(source: str, found: list[Mutant]) -> dict[int, Key]:
    """The key of each mutant of ``found`` (every mutant of ``source``'s module), by index."""
    texts = site_texts(source)
    seen: dict[tuple[int, str, str], int] = {}
    out = {}
    for m in sorted(found, key=lambda m: m.index):
        spot = (m.line, m.operator, m.description)
        seen[spot] = seen.get(spot, -1) + 1
        out[m.index] = (m.module, m.line, texts[m.index], m.operator, m.description, seen[spot])
    return out


def _key(entry: dict[str, Any]) -> Key:
    return (entry["module"], entry["line"], entry["text"], entry["operator"], entry["description"],
            entry["occurrence"])


def load(path: Path) -> set[Key]:
    """The keys of the file (none when it does not exist)."""
    if not path.exists():
        return set()
    return {_key(e) for e in json.loads(path.read_text(encoding="utf-8"))}


def remember(path: Path, report: dict[str, Any], sources: dict[str, str], found: dict[str, list[Mutant]],
             lines: set[int]) -> int:
    """Add to the file the survivors of ``report`` (not *no coverage*) on ``lines`` of the modules
    of ``sources`` (name -> the text the report was run on, which must still be the file's text:
    ``found`` are the mutants of it); the number added."""
    entries = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    have = {_key(e) for e in entries}
    added = 0
    for module, source in sources.items():
        by_index = keys(source, found[module])
        for s in report["modules"].get(module, {}).get("survivors", []):
            key = by_index.get(s["index"])
            if s["status"] != "survived" or s["line"] not in lines or key is None or key in have:
                continue
            if key[1:5] != (s["line"], key[2], s["operator"], s["description"]):
                raise SystemExit(f"{module}: the report's mutant {s['index']} is not the file's (edited since?)")
            entries.append(dict(zip(("module", "line", "text", "operator", "description", "occurrence"),
                                    key, strict=True)))
            have.add(key)
            added += 1
    entries.sort(key=lambda e: (e["module"], e["line"], e["operator"], e["description"], e["occurrence"]))
    rows = ",\n".join(" " + json.dumps(e, ensure_ascii=False) for e in entries)  # one entry a line
    path.write_text(f"[\n{rows}\n]\n", encoding="utf-8")
    return added


def not_rerun(mutant: dict[str, Any]) -> dict[str, Any]:
    """The outcome of a known equivalent: survived, no time, no test run."""
    return {**mutant, "status": "survived", "seconds": 0.0, "tests": 0, "level": "known", "detail": NOT_RERUN,
            "cpu": 0.0}
