"""``cimc inspect``, ``cimc validate``, ``cimc diff`` and ``cimc maps``: looking at a build.

* ``inspect BUILD`` — summary, per-layer table and a text map of every macro (≤ 100
  columns); ``--macro N`` / ``--layer NAME`` zoom in; ``--html FILE`` writes the
  self-contained HTML report, ``--png DIR`` / ``--svg DIR`` the placement pictures.
* ``validate BUILD`` — every check of ``cimc.check.validate``; exit 0, or exit 8
  listing every violation (``--json``: all of them in ``details.violations``);
  ``--rebuild`` / ``--model FILE`` also compile the source again and compare every cell.
* ``diff A B`` — per-layer figures, moved column runs and changed macros.
* ``maps BUILD -o DIR`` — ``macro_NNNN.png|svg`` per macro and ``overview.png|svg``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cimc.cli.common import State, echo, guarded

BUILD = click.Path(file_okay=False, path_type=Path)


def _console() -> Any:
    from cimc.safe_text import safe_console as Console

    probe = Console()
    return Console(width=min(100, probe.width) if probe.is_terminal else 100)


def _echo_json(doc: Any) -> None:
    echo(json.dumps(doc, sort_keys=True))


@click.command("inspect")
@click.argument("build", type=BUILD)
@click.option("--layer", help="Zoom on one CIM layer (name, or a unique part of it).")
@click.option("--macro", "macro_index", type=click.IntRange(min=0), help="Zoom on one macro.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML report (tables, maps, hover details).")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), help="Write PNG maps here.")
@click.option("--svg", "svg_dir", type=click.Path(file_okay=False, path_type=Path), help="Write SVG maps here.")
@click.pass_obj
@guarded
def inspect_cmd(state: State, build: Path, layer: str | None, macro_index: int | None, html_file: Path | None,
                png_dir: Path | None, svg_dir: Path | None) -> None:
    """Show what BUILD maps where: summary, layers and a text map of every macro."""
    from cimc.build.reader import read_build
    from cimc.progress import Progress
    from cimc.views import inspect_view as view

    with Progress(enabled=not state.as_json) as progress:
        progress.phase(f"reading {build}")
        b = read_build(build)
        index = view.find_layer(b, layer) if layer is not None else None
        if macro_index is not None:
            view.check_macro(b, macro_index)
        written = _write_files(b, html_file, png_dir, svg_dir, macro_index, progress)
        if state.as_json:
            doc = {**view.summary(b), "written": [str(p) for p in written]}
        else:
            progress.phase("text view")
            shown = (view.macro_view(b, macro_index, index) if macro_index is not None
                     else view.layer_view(b, index) if index is not None else view.overview(b))
    if state.as_json:
        _echo_json(doc)
        return
    console = _console()
    console.print(shown)
    for path in written:
        console.print(f"wrote {path}")


def _write_files(b: Any, html_file: Path | None, png_dir: Path | None, svg_dir: Path | None,
                 macro_index: int | None, progress: Any) -> list[Path]:
    written: list[Path] = []
    if html_file is not None:
        from cimc.views.html_report import write_html

        progress.phase(f"writing {html_file.name}")
        written.append(write_html(b, html_file))
    for folder, fmt in ((png_dir, "png"), (svg_dir, "svg")):
        if folder is not None:
            from cimc.views.placement_map import write_maps

            chosen = None if macro_index is None else [macro_index]
            written += write_maps(b, folder, formats=(fmt,), macros=chosen, progress=progress)
    return written


@click.command("validate")
@click.argument("build", type=BUILD)
@click.option("--rebuild", is_flag=True, help="Also compile the zoo source again and compare every cell.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Compile this source ONNX file again and compare every cell (implies --rebuild).")
@click.pass_obj
@guarded
def validate_cmd(state: State, build: Path, rebuild: bool, model: Path | None) -> None:
    """Check BUILD without trusting it; exit 8 listing every violation."""
    from cimc.emulator.validate import require_ok, validate_build
    from cimc.progress import Progress
    from cimc.safe_text import safe_message

    with Progress(enabled=not state.as_json) as progress:
        result = validate_build(build, reference=model or rebuild, progress=progress)
    if not result.ok and not state.as_json:
        for violation in result.violations:
            echo(f"  {safe_message(str(violation))}", err=True)  # one line each, whatever the build holds
    require_ok(result)
    if state.as_json:
        _echo_json(result.to_dict())
        return
    echo(f"{build}: valid ({len(result.checks)} checks: {', '.join(result.checks)})")
    for note in result.notes:
        echo(f"  note: {note}")


@click.command("diff")
@click.argument("build_a", type=BUILD)
@click.argument("build_b", type=BUILD)
@click.pass_obj
@guarded
def diff_cmd(state: State, build_a: Path, build_b: Path) -> None:
    """What changed from BUILD_A to BUILD_B: layers, moved columns, macros."""
    from cimc.build.reader import read_build
    from cimc.progress import Progress
    from cimc.views.diff import diff_builds
    from cimc.views.diff_view import diff_renderable

    with Progress(enabled=not state.as_json) as progress:
        progress.phase(f"reading {build_a}")
        a = read_build(build_a)
        progress.phase(f"reading {build_b}")
        b = read_build(build_b)
        progress.phase("comparing")
        doc = diff_builds(a, b)
    if state.as_json:
        _echo_json(doc)
        return
    _console().print(diff_renderable(doc))


@click.command("maps")
@click.argument("build", type=BUILD)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the pictures.")
@click.option("--format", "formats", type=click.Choice(["png", "svg"]), multiple=True, default=("png",),
              show_default=True, help="Repeat for both.")
@click.option("--macro", "macros", type=click.IntRange(min=0), multiple=True, help="Only these macros (repeatable).")
@click.option("--no-overview", is_flag=True, help="Skip overview.png/svg.")
@click.option("--timeline", is_flag=True, help="Also draw timeline.png/svg: loads and compute phases per physical "
              "macro over time (a Gantt chart of schedule.json's timeline).")
@click.option("-j", "--jobs", type=click.IntRange(min=0, max=64), default=0, show_default=True,
              help="Processes drawing the macros (0: the CPUs, at most 4, from 64 macros on).")
@click.pass_obj
@guarded
def maps_cmd(state: State, build: Path, output: Path, formats: tuple[str, ...], macros: tuple[int, ...],
             no_overview: bool, timeline: bool, jobs: int) -> None:
    """Write placement pictures of BUILD: one per macro and an overview (needs cimc[plot])."""
    from cimc.build.reader import read_build
    from cimc.progress import Progress
    from cimc.views.placement_map import default_jobs, write_maps

    with Progress(enabled=not state.as_json) as progress:
        progress.phase(f"reading {build}")
        b = read_build(build)
        written = write_maps(b, output, formats=formats, macros=macros or None, overview=not no_overview,
                             progress=progress, jobs=jobs or default_jobs(len(macros) or b.num_macros))
        if timeline:
            from cimc.views.gantt import write_gantt

            progress.phase("drawing the timeline")
            written += write_gantt(b, output, formats)
    if state.as_json:
        _echo_json({"output": str(output), "files": [p.name for p in written]})
        return
    echo(f"wrote {len(written)} picture(s) to {output}/")


COMMANDS = (inspect_cmd, validate_cmd, diff_cmd, maps_cmd)


def register(main: click.Group) -> None:
    for command in COMMANDS:
        main.add_command(command)
