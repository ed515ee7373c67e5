"""``cimc passes``: every registered pass, the declared pipelines it belongs to, the options it
reads (``cimc.options``), the passes it needs before it, and its docstring's first line.

    cimc passes            # each pass, then each declared pipeline
    cimc --json passes     # {"passes": [{"name", "pipelines", "options", "needs", "summary"}, ...],
                           #  "pipelines": {"default": [...], ...}}
"""

from __future__ import annotations

import json
from typing import Any

import click

from cimc.cli.common import State, echo, guarded


def pass_entries() -> list[dict[str, Any]]:
    """One entry per registered pass, in pipeline order (morph, then the default pipeline)."""
    import cimc.morph.channels_pass  # noqa: F401  (registers morph-channels)
    from cimc.options import OPTIONS, passes_options
    from cimc.passes import registry
    from cimc.passes.pipelines import DEFAULT, MORPH, membership

    order = (*MORPH, *DEFAULT)
    classes = sorted(registry.all_passes(), key=lambda c: order.index(c.name) if c.name in order else len(order))
    return [{"name": c.name, "pipelines": membership(c.name), "needs": list(c.needs),
             "options": [OPTIONS[o].flag for o in passes_options(c.name)], "summary": registry.summary(c)}
            for c in classes]


@click.command("passes")
@click.pass_obj
@guarded
def passes_cmd(state: State) -> None:
    """List the compiler passes: pipelines, options, prerequisites and what each does."""
    from cimc.passes.pipelines import PIPELINES

    entries = pass_entries()
    if state.as_json:
        echo(json.dumps({"passes": entries, "pipelines": {k: list(v) for k, v in PIPELINES.items()}},
                              sort_keys=True))
        return
    for e in entries:
        echo(f"{e['name']}  [{', '.join(e['pipelines']) or 'no pipeline'}]")
        echo(f"    {e['summary']}")
        if e["options"]:
            echo(f"    options: {' '.join(e['options'])}")
        if e["needs"]:
            echo(f"    needs: {', '.join(e['needs'])}")
    echo("pipelines:")
    for name, pipeline in PIPELINES.items():
        echo(f"    {name}: {' → '.join(pipeline)}")
