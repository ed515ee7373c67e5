"""``cimc zoo``: list the built-in models and export them to ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cimc.cli.common import State, echo, guarded
from cimc.errors import UsageError


@click.group()
def zoo() -> None:
    """The built-in model zoo (the paper's CIFAR-10 models and small test nets)."""


@zoo.command("list")
@click.pass_obj
@guarded
def zoo_list(state: State) -> None:
    """List the zoo models with their input shapes."""
    import cimc.models as models

    rows = [{"name": n, "input_shape": list(models.input_shape(n)), "description": models.describe(n)}
            for n in models.available()]
    if state.as_json:
        echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        echo(f"{row['name']:<14} {'x'.join(map(str, row['input_shape'])):<12} {row['description']}")


@zoo.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--seed", default=0, show_default=True, help="Weight initialisation seed.")
@click.pass_obj
@guarded
def zoo_export(state: State, name: str, output: Path, seed: int) -> None:
    """Export zoo model NAME to an ONNX file."""
    import cimc.models as models
    from cimc.progress import Progress

    if name not in models.available():
        raise UsageError(f"unknown zoo model '{name}'", hint=f"choose one of {', '.join(models.available())}")
    with Progress(enabled=not state.as_json) as progress:
        progress.phase(f"exporting {name} (torch)")
        models.export_onnx(name, output, seed=seed)
    echo(f"wrote {output}")
