"""Declared pipelines: which registered passes run, in which order, as data.

* ``DEFAULT``: what ``cimc compile`` runs;
* ``MORPH``: what ``cimc compile --morph`` runs before ``DEFAULT`` (the structure-only morph);
* ``EQUALIZE``: what ``cimc compile --equalize`` inserts after ``fold-batchnorm``
  (``with_equalize``: cross-layer equalisation);
* ``MAPPING``: the mapping passes the morph checks its bitline count with;
* ``POOLED``: what ``cimc compile --weight-pool`` runs: ``DEFAULT`` with ``pool-weights`` after
  tile-wordlines (``pooled``);
* ``SEARCH_PREFIX``: the cost-only prefix ``cimc search`` runs once (``DEFAULT`` cut before
  quantize: placement and cost then run per bit configuration).

``select`` applies ``--passes`` (replaces the base pipeline), ``--disable`` (repeatable) and
``--stop-after`` to a base pipeline and checks the result: every name registered, each pass
after the passes it ``needs``, and, for a build, every CIM layer placed (``check_buildable``).
``instantiate`` turns names into passes configured by the compile options.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cimc.errors import UsageError
from cimc.passes import registry
from cimc.passes.manager import GraphPass

Pipeline = tuple[str, ...]


def upto(pipeline: Pipeline, last: str) -> Pipeline:
    """``pipeline`` up to and including ``last``."""
    return pipeline[: pipeline.index(last) + 1]


DEFAULT: Pipeline = ("fold-batchnorm", "select-cim", "tile-wordlines", "quantize", "place-bitlines",
                     "scale-to-shift")
MORPH: Pipeline = ("morph-channels",)
EQUALIZE: Pipeline = ("equalize",)
#: ``EQUALIZE`` runs right after this pass.
EQUALIZE_AFTER = "fold-batchnorm"
MAPPING: Pipeline = ("select-cim", "tile-wordlines", "place-bitlines")
SEARCH_PREFIX: Pipeline = upto(DEFAULT, "tile-wordlines")
POOL_PASS, POOL_AFTER = "pool-weights", "tile-wordlines"


def pooled(pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with ``pool-weights`` right after ``tile-wordlines`` (unchanged without it)."""
    if POOL_AFTER not in pipeline or POOL_PASS in pipeline:
        return pipeline
    at = pipeline.index(POOL_AFTER) + 1
    return (*pipeline[:at], POOL_PASS, *pipeline[at:])


POOLED: Pipeline = pooled(DEFAULT)
#: Every declared pipeline by name (``cimc passes`` shows which a pass belongs to).
PIPELINES: dict[str, Pipeline] = {"default": DEFAULT, "morph": MORPH, "equalize": EQUALIZE, "mapping": MAPPING,
                                  "search-prefix": SEARCH_PREFIX, "pooled": POOLED}
#: A build's backend needs every CIM layer placed: once select-cim ran, so must place-bitlines.
PLACED_AFTER = ("select-cim", "place-bitlines")


def with_equalize(pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with ``EQUALIZE`` right after ``EQUALIZE_AFTER`` (first when it has none)."""
    at = pipeline.index(EQUALIZE_AFTER) + 1 if EQUALIZE_AFTER in pipeline else 0
    return (*pipeline[:at], *EQUALIZE, *pipeline[at:])


def select(base: Pipeline, passes: Sequence[str] | None = None, disable: Iterable[str] = (),
           stop_after: str | None = None) -> Pipeline:
    """The pipeline to run (module doc); a ``UsageError`` for an unknown or misplaced name."""
    names = tuple(passes) if passes else base
    off = tuple(disable)
    for name in (*names, *off, *((stop_after,) if stop_after else ())):
        registry.get(name)
    _check_listed(names, off, stop_after)
    names = tuple(n for n in names if n not in off)
    if stop_after is not None:
        names = upto(names, stop_after)
    check_order(names)
    return names


def _check_listed(names: Pipeline, off: Pipeline, stop_after: str | None) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"pass(es) listed twice: {', '.join(twice)}")
    absent = [n for n in (*off, *((stop_after,) if stop_after else ())) if n not in names]
    if absent:
        raise UsageError(f"pass '{absent[0]}' is not in the pipeline", hint=f"pipeline: {', '.join(names)}")
    if stop_after in off:
        raise UsageError(f"--stop-after {stop_after} names a disabled pass")


def check_order(names: Pipeline) -> None:
    """Each pass after every pass it ``needs``."""
    for i, name in enumerate(names):
        for need in registry.get(name).needs:
            if need not in names[:i]:
                raise UsageError(f"pass '{name}' needs '{need}' before it",
                                 hint=f"pipeline: {', '.join(names)}; disable '{name}' too, or run '{need}' first")


def check_buildable(names: Pipeline, full: Pipeline) -> None:
    """A build of what ``names`` leave needs every CIM layer placed; ``full`` is the pipeline
    before ``--stop-after`` (to name the earliest stop that builds)."""
    if _buildable(names):
        return
    stops = [n for i, n in enumerate(full) if i >= len(names) - 1 and _buildable(full[: i + 1])]
    hint = f"the earliest --stop-after that builds is {stops[0]}" if stops else \
        f"add {PLACED_AFTER[1]} to the pipeline"
    raise UsageError(f"the build needs every CIM layer placed: {PLACED_AFTER[1]} must run after "
                     f"{PLACED_AFTER[0]}", hint=hint)


def _buildable(names: Pipeline) -> bool:
    first, then = PLACED_AFTER
    return first not in names or then in names[names.index(first):]


def instantiate(names: Pipeline, options: Any) -> list[GraphPass]:
    """The passes of ``names``, each built by its ``from_options(options)``."""
    return [registry.get(name).from_options(options) for name in names]


def membership(name: str) -> list[str]:
    """The declared pipelines pass ``name`` belongs to."""
    return [key for key, pipeline in PIPELINES.items() if name in pipeline]
