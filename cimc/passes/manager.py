"""The pass manager: ``requires → run → verify → ensures`` for each pass, timed and logged.

A pass is a frozen dataclass (its fields are its settings) with a ``name`` and a
``run(graph, ctx) -> PassResult``; it returns a new graph and never mutates its input.
``from_options`` builds it from the compile options (the ones ``cimc.options`` declares for
it); ``needs`` names the passes that must run before it in a pipeline
(``cimc.passes.pipelines``). Errors raised inside a pass are re-raised naming the pass and the
passes already run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cimc.errors import CimcError, PassError
from cimc.ir.graph import Graph
from cimc.ir.printer import format_graph
from cimc.ir.verify import verify
from cimc.passes.context import PassContext, PassRecord

__all__ = ["GraphPass", "PassContext", "PassRecord", "PassResult", "run_passes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassResult:
    graph: Graph
    modified: bool


@dataclass(frozen=True)
class GraphPass:
    """Base class: subclasses set ``name`` and implement ``run``."""

    name: ClassVar[str] = "pass"
    needs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_options(cls, options: Any) -> GraphPass:
        """The pass as the compile ``options`` (an object with the ``cimc.options`` names as
        attributes) configure it; reads only the options declared for this pass."""
        return cls()

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        """Check preconditions; raise a ``CimcError`` if they do not hold."""

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def ensures(self, graph: Graph, ctx: PassContext) -> None:
        """Check postconditions on the result."""


def run_passes(graph: Graph, passes: Sequence[GraphPass], ctx: PassContext) -> Graph:
    """Run ``passes`` in order; verify after each; dump IR to ``ctx.dump_dir`` if set."""
    if ctx.dump_dir is not None:
        _dump(ctx.dump_dir, 0, "input", graph)
    for index, p in enumerate(passes, start=1):
        if ctx.progress is not None:
            ctx.progress(p.name)
        start = time.perf_counter()
        result = _run_one(p, graph, ctx)
        graph = result.graph
        ctx.history.append(PassRecord(p.name, result.modified, time.perf_counter() - start))
        log.info("pass %s: %.3f s", p.name, ctx.history[-1].seconds)
        if ctx.dump_dir is not None:
            _dump(ctx.dump_dir, index, p.name, graph)
    return graph


def _run_one(p: GraphPass, graph: Graph, ctx: PassContext) -> PassResult:
    done = [r.name for r in ctx.history]
    try:
        p.requires(graph, ctx)
        result = p.run(graph, ctx)
        verify(result.graph)
        p.ensures(result.graph, ctx)
    except CimcError as exc:
        exc.details.setdefault("pass", p.name)
        exc.details.setdefault("passes_run", done)
        raise
    except Exception as exc:
        after = f" after {', '.join(done)}" if done else ""
        raise PassError(f"pass '{p.name}' failed{after}: {type(exc).__name__}: {exc}",
                        details={"pass": p.name, "passes_run": done}) from exc
    return result


def _dump(folder: Path, index: int, name: str, graph: Graph) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{index:02d}-{name}.txt").write_text(format_graph(graph), encoding="utf-8")
