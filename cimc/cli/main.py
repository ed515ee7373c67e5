"""The ``cimc`` command line: the top-level group and its commands (each in its own
``cimc/cli/<topic>.py``; shared plumbing in ``cimc.cli.common``). Importing it stays cheap:
commands import numpy, onnx and torch only when they run."""

from __future__ import annotations

import logging

import click

from cimc import __version__
from cimc.cli.common import CimcGroup, State
from cimc.cli.compile import compile_cmd
from cimc.cli.emulate import emulate_cmd
from cimc.cli.export_neurosim import export_neurosim_cmd
from cimc.cli.export_qdq import export_qdq_cmd
from cimc.cli.inspect import register as register_inspect
from cimc.cli.morph import morph_cmd
from cimc.cli.passes import passes_cmd
from cimc.cli.qat import qat_cmd
from cimc.cli.search import search_cmd
from cimc.cli.sweep import sweep_cmd
from cimc.cli.zoo import zoo


@click.group(cls=CimcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cimc")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable results and errors.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, debug: bool, as_json: bool, verbose: int) -> None:
    """cimc: compile trained CNNs (ONNX) onto compute-in-memory macros."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = State(debug, as_json)


main.add_command(compile_cmd)
main.add_command(zoo)
register_inspect(main)  # inspect, validate, diff, maps
main.add_command(qat_cmd)
main.add_command(morph_cmd)
main.add_command(emulate_cmd)
main.add_command(export_qdq_cmd)
main.add_command(export_neurosim_cmd)
main.add_command(search_cmd)
main.add_command(sweep_cmd)
main.add_command(passes_cmd)



if __name__ == "__main__":  # python -m cimc.cli.main (e.g. under torchrun -m)
    main()
