"""Where every (layer, segment, output channel) column of a CIM layer lands: macro and bitline.

CIM layers are taken in topological order and their columns ``k = s·Cout + o`` laid out
one after another on a global column axis; global column ``g`` sits on macro ``g // BL``,
bitline ``g % BL``, using wordlines ``[0, rows of segment s)``.

Bit-slicing (``cimc.quant.slicing``): a layer whose weights are wider than a cell has
``S = QuantParams.w_slices`` digit columns per (segment, output channel), layer column
``k = (s·Cout + o)·S + j`` holding digit ``j``. The ``S`` columns of one (segment, channel)
— a *group* — sit on adjacent bitlines of one macro: group ``q`` continues the global axis,
but a group that would cross a macro boundary starts on the next macro instead (the bitlines
left over stay idle). With first column ``f`` (``b0 = f mod BL``), ``n0 = ⌊(BL − b0)/S⌋``
groups fit on the first macro and ``n = ⌊BL/S⌋`` on each further one::

    q < n0:  macro f // BL,                    bitline b0 + q·S + j
    q ≥ n0:  macro f // BL + 1 + (q − n0) // n, bitline ((q − n0) mod n)·S + j

With ``S = 1`` (and for layers without ``QuantParams``: mapping-only compiles) this is the
plain layout above. Where a layer's first column ``f`` lies is the placement policy's choice
(``packed``: right after the previous layer, ``ceil(total columns / BL)`` macros in all;
``aligned``: on a fresh macro), made by the place-bitlines pass.
"""

from __future__ import annotations

import numpy as np

from cimc.ir.annotations import QuantParams
from cimc.ir.node import Node


def weight_slices(node: Node) -> int:
    """Digit columns per (segment, output channel): ``QuantParams.w_slices``, else 1."""
    q = node.ann.get_ann(QuantParams)
    return 1 if q is None else q.w_slices


def slice_columns(first_column: int, groups: int, slices: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(macro, bitline)`` of ``groups·slices`` columns from global column ``first_column``,
    each group's ``slices`` columns adjacent on one macro (module docstring)."""
    if slices == 1:
        return np.divmod(first_column + np.arange(groups, dtype=np.int64), width)
    m0, b0 = divmod(first_column, width)
    n0, n = (width - b0) // slices, width // slices
    q = np.arange(groups, dtype=np.int64)
    later = q - n0
    macro = np.where(q < n0, m0, m0 + 1 + later // n)
    start = np.where(q < n0, b0 + q * slices, (later % n) * slices)
    j = np.arange(slices, dtype=np.int64)
    return np.repeat(macro, slices), (start[:, None] + j[None, :]).reshape(-1)
