"""The sweep's report: a rich table of the Pareto set and ``pareto.png``.

The table lists the Pareto points (``cimc.sweep.pareto``) by latency, with the axes that vary
among all points, the cost figures and, with eval data, the accuracies. The plot shows every
successful point — latency (cycles) against compiled top-1 accuracy, or against bitlines without
eval data — coloured by macro usage, with the Pareto points outlined in black.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cimc.sweep.pareto import Objective, cost_field, has_accuracy
from cimc.untrusted import refuse_special_output

Record = dict[str, Any]


def varying_axes(records: list[Record]) -> list[str]:
    """Point fields whose value differs between records (config order of first appearance)."""
    names = list(dict.fromkeys(k for r in records for k in r["point"]))
    return [n for n in names if len({repr(r["point"].get(n)) for r in records}) > 1]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table_rows(front: list[Record], axes: list[str], accuracy: bool,
               field: str = "latency_cycles") -> tuple[list[str], list[list[str]]]:
    """The Pareto table, by the minimised ``field`` (a column of its own unless it is the latency)."""
    extra = [] if field == "latency_cycles" else [field]
    headers = ["key", *axes, *extra, "latency cyc.", "load cyc.", "compute cyc.", "bitlines", "macros", "usage",
               "fits"]
    headers += ["compiled top-1", "float top-1"] if accuracy else []
    rows = []
    for r in sorted(front, key=lambda r: (r[field], r["bitlines"], r["key"])):
        row = [r["key"][:8], *(_fmt(r["point"].get(a)) for a in axes), *(_fmt(r[f]) for f in extra),
               _fmt(r["latency_cycles"]),
               _fmt(r["loading_cycles"]), _fmt(r["computing_cycles"]), _fmt(r["bitlines"]), _fmt(r["macros"]),
               f"{100 * r['macro_usage']:.2f}%", _fmt(r["fits_on_chip"])]
        if accuracy:
            row += [f"{100 * r['compiled_top1']:.2f}%", f"{100 * r['float_top1']:.2f}%"]
        rows.append(row)
    return headers, rows


def print_table(ok: list[Record], front: list[Record], objs: tuple[Objective, ...], failed: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cimc.safe_text import safe_console as Console

    accuracy = has_accuracy(objs)
    headers, rows = table_rows(front, varying_axes(ok), accuracy, cost_field(objs))
    arrows = ", ".join(f"{name} {'↑' if sense == 'max' else '↓'}" for name, sense in objs)
    table = Table(title=f"Pareto set: {len(front)} of {len(ok)} points ({arrows}); {failed} failed")
    for h in headers:
        table.add_column(escape(h), justify="left" if h == "key" else "right")
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    Console(width=max(180, Console().width)).print(table)


def _xy(records: list[Record], yname: str, xname: str = "latency_cycles") -> tuple[np.ndarray, np.ndarray]:
    return (np.array([r[xname] for r in records], dtype=np.float64),
            np.array([r[yname] for r in records], dtype=np.float64))


def plot(ok: list[Record], front: list[Record], objs: tuple[Objective, ...], path: Path) -> Path:
    """Write the scatter plot (module docstring) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yname, ylabel = ("compiled_top1", "compiled top-1 accuracy") if has_accuracy(objs) else ("bitlines", "bitlines")
    xname = cost_field(objs)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    usage = np.array([100 * r["macro_usage"] for r in ok] + [100 * r["macro_usage"] for r in front])
    scale: dict[str, Any] = {"cmap": "viridis", "vmin": float(usage.min()), "vmax": float(usage.max()), "s": 50}
    points = ax.scatter(*_xy(ok, yname, xname), c=usage[:len(ok)], edgecolors="none", rasterized=len(ok) > 1000,
                        **scale)
    if front:  # drawn again on top, outlined: one collection each, not one edge colour per point
        ax.scatter(*_xy(front, yname, xname), c=usage[len(ok):], edgecolors="black", linewidths=1.5, **scale)
    fig.colorbar(points, ax=ax, label="macro usage (%)")
    ax.set_xlabel("latency (cycles: weight loading + computing)" if xname == "latency_cycles" else xname)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{len(ok)} points, Pareto set outlined ({len(front)})")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_special_output(path)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
