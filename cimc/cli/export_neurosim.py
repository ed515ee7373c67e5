"""``cimc export-neurosim BUILD -o NetWork.csv``: the build's CIM layers as NeuroSim's network
file (``cimc.views.neurosim``; docs/neurosim.md maps cimc's counts to NeuroSim's figures).

    cimc export-neurosim build/vgg9 -o NetWork.csv      # then: ./NeuroSIM/main NetWork.csv ...
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cimc.cli.common import State, echo, guarded
from cimc.errors import UsageError


@click.command("export-neurosim")
@click.argument("build", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The NetWork.csv file to write.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.pass_obj
@guarded
def export_neurosim_cmd(state: State, build: Path, output: Path, force: bool) -> None:
    """Write BUILD's CIM layers as NeuroSim's NetWork.csv (IFM H, W, C, kernel, OFM, pooling, stride)."""
    from cimc.build.reader import read_build
    from cimc.views.neurosim import network_csv

    if (output.exists() or output.is_symlink()) and not force:
        raise UsageError(f"{output} exists", hint="pass --force to replace it")
    text = network_csv(read_build(build))
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_text(text, encoding="ascii")
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    layers = text.count("\n")
    if state.as_json:
        echo(json.dumps({"output": str(output), "layers": layers}, sort_keys=True))
        return
    echo(f"wrote {output}: {layers} CIM layers")
