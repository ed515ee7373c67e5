"""A weight pool trained with the model (``cimc qat --weight-pool``) carried inside it: ONNX
``metadata_props["cimc.pool"]`` (after import ``graph.metadata["cimc.pool"]``), a JSON document::

    {"version": 1, "vector_length": L, "error_bits": E,
     "pool": ["+-+-…", …]}                  (P strings of L signs: pool vector k, '+' = +1)

Only the pool travels: the pooled layers' weights are the materialised ``W = fl32(α·q)`` and
their ``cimc.quant`` ``w_step`` is ``α``, so ``q = round(W/α)`` (``numerics.weight_codes``) are the
codes QAT used, and each vector position's index and error term follow from its codes alone
(``derive``): with ``A = 2^E``, ``q = A·p + e``, ``|e| ≤ E < A``, so ``p = sign(q)`` and ``e = q − A·p``;
the index is the first pool vector whose signs match ``p`` on the position's real rows — the
one QAT's ``argmax_k ⟨u, p_k⟩`` (first maximum) chose, since vectors equal on the real rows score
alike. ``parse`` checks everything (bounded sizes, signs only); ``derive`` refuses codes that are
no pool codes (``InvalidModelError`` naming the layer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from cimc.errors import InvalidModelError
from cimc.options import POOL_MAX, validate
from cimc.untrusted import load_json

KEY = "cimc.pool"
VERSION = 1
MAX_VECTOR = 4096


@dataclass(frozen=True, eq=False)
class TrainedPool:
    """The pool ``(P, L)`` int8 ``±1`` and its error bits ``E``."""

    pool: np.ndarray
    error_bits: int

    @property
    def vector_length(self) -> int:
        return int(self.pool.shape[1])

    @property
    def multiplier(self) -> int:
        return 1 << self.error_bits


def write(pool: np.ndarray, error_bits: int) -> str:
    """The ``cimc.pool`` JSON of a ``(P, L)`` ``±1`` pool."""
    table = np.where(np.asarray(pool) > 0, "+", "-")
    rows = ["".join(r) for r in table.tolist()]
    return json.dumps({"version": VERSION, "vector_length": int(pool.shape[1]), "error_bits": int(error_bits),
                       "pool": rows}, sort_keys=True)


def parse(text: str) -> TrainedPool:
    """The pool of a ``cimc.pool`` string, checked (an ``InvalidModelError`` otherwise)."""
    doc = load_json(text, f"model metadata '{KEY}'", InvalidModelError)
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise InvalidModelError(f"model metadata '{KEY}' has version {version!r}; cimc reads version {VERSION}")
    length, bits, rows = doc.get("vector_length"), doc.get("error_bits"), doc.get("pool")
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_VECTOR:
        raise InvalidModelError(f"'{KEY}': vector_length must be an integer in [1, {MAX_VECTOR}], got {length!r}")
    if bits not in (0, 1) or isinstance(bits, bool):
        raise InvalidModelError(f"'{KEY}': error_bits must be 0 or 1, got {bits!r}")
    if not isinstance(rows, list) or not 1 <= len(rows) <= POOL_MAX:
        raise InvalidModelError(f"'{KEY}': pool must be a list of 1 to {POOL_MAX} vectors")
    if not all(isinstance(r, str) and len(r) == length and set(r) <= {"+", "-"} for r in rows):
        raise InvalidModelError(f"'{KEY}': every pool vector must be a string of {length} '+' or '-'")
    validate("pool_vector", length)
    chars = np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8).reshape(len(rows), length)
    pool = np.where(chars == ord("+"), 1, -1).astype(np.int8)
    pool.flags.writeable = False
    return TrainedPool(pool, int(bits))


def _keys(signs: np.ndarray) -> np.ndarray:
    """One comparable key per row of a ``(N, n)`` ``±1`` array (its packed bits as bytes)."""
    packed = np.packbits(signs > 0, axis=1)
    return np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).reshape(-1)


def _first_match(pool: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Per row of ``signs (N, n)``, the first pool vector equal to it on its ``n`` leading
    entries, or ``-1``."""
    keys = _keys(pool[:, :signs.shape[1]])
    order = np.argsort(keys, kind="stable")  # equal keys keep pool order: the first index first
    sorted_keys = keys[order]
    want = _keys(signs)
    at = np.searchsorted(sorted_keys, want, side="left")
    found = (at < keys.size) & (sorted_keys[np.minimum(at, keys.size - 1)] == want)
    return np.where(found, order[np.minimum(at, keys.size - 1)], -1).astype(np.int64)


def derive(layer: str, trained: TrainedPool, q: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``index (S, Cout)`` and ``error (S, Cout, L)`` (``None`` when ``E = 0``) of a layer whose
    integer codes are ``q (Cout, rows)`` (module doc); an ``InvalidModelError`` for codes that
    are not ``A·pool[k] + e`` on some position."""
    length, a = trained.vector_length, trained.multiplier
    cout, rows = q.shape
    segments = -(-rows // length)
    padded = np.zeros((cout, segments * length), dtype=np.int64)
    padded[:, :rows] = q
    v = padded.reshape(cout, segments, length).transpose(1, 0, 2)  # (S, Cout, L)
    real = (np.arange(segments * length) < rows).reshape(segments, 1, length)
    p = np.where(v > 0, 1, -1).astype(np.int8)
    e = np.where(real, v - a * p, 0)
    bad = real & ((v == 0) | (np.abs(e) > trained.error_bits))
    kept = np.any(e != 0, axis=2)
    bad |= kept[:, :, None] & real & (e == 0)  # an error vector is kept whole or pruned whole
    if np.any(bad):
        s, o, t = (int(i[0]) for i in np.nonzero(bad))
        raise InvalidModelError(f"layer '{layer}': weight code {int(v[s, o, t])} at output {o}, row {s * length + t} "
                                f"is not a code of the trained pool (A·p + e, A = {a}, |e| ≤ {trained.error_bits})")
    full = rows // length  # whole vectors in one lookup, a shorter last one in another
    index = np.empty((segments, cout), dtype=np.int64)
    index[:full] = _first_match(trained.pool, p[:full].reshape(-1, length)).reshape(full, cout)
    if full < segments:
        index[full] = _first_match(trained.pool, p[full, :, :rows - full * length])
    if np.any(index < 0):
        s, o = (int(i[0]) for i in np.nonzero(index < 0))
        raise InvalidModelError(f"layer '{layer}': the weight signs of output {o}, rows {s * length}.. match no "
                                f"vector of the trained pool")
    return index, (e.astype(np.int8) if trained.error_bits else None)
