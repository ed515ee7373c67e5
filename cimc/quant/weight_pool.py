"""Weight-pool compression (docs/weight-pool.md): one pool of ``P`` binary vectors of length
``L`` shared by every CIM layer; per layer an index per vector position, a scale ``α`` (per
layer or per output column) and optionally a 1-bit error term::

    q[o, s·L + t] = A · pool[idx[s, o], t] + e[s, o, t]      A = 2^E, e ∈ {−1, 0, +1}
    W_eff         = α · q

Vector ``(s, o)`` is rows ``[s·L, (s+1)·L)`` of output channel ``o`` of the unrolled
``(Cout, rows)`` weights (the last run may be shorter). The pool is built by binary k-means on
the vectors normalised by their layer's (column's) mean ``|W|``: assign ``idx = argmax_k ⟨u, p_k⟩``,
update ``p_k = sign(Σ u)``; the scale and error term by alternating least squares; a fraction
``ρ`` of the error vectors (those removing the least squared error) pruned to 0. Seeded and
deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEED = 0
ROUNDS = 12
FIT_ROUNDS = 4
BLOCK = 1 << 15  # vectors scored against the pool at once


@dataclass(frozen=True, eq=False)
class PoolConfig:
    """Vector length ``L``, pool size ``P``, error bits ``E`` (0 or 1), error pruning ratio ``ρ``
    and whether scales are per output column."""

    vector_length: int
    pool_size: int
    error_bits: int = 0
    error_prune: float = 0.0
    per_column: bool = False

    @property
    def multiplier(self) -> int:
        return 1 << self.error_bits

    @property
    def code_bits(self) -> int:
        """Narrow signed bits holding ``|q| ≤ A + E``: 2 for ±1, 3 for ±3."""
        return int(self.multiplier + self.error_bits).bit_length() + 1


@dataclass(frozen=True, eq=False)
class PooledLayer:
    """One layer's share of the pool: ``index (S, Cout)``, ``error (S, Cout, L)`` or ``None``,
    ``scale (1,)`` or ``(Cout,)`` float32."""

    index: np.ndarray
    error: np.ndarray | None
    scale: np.ndarray


def vectors(matrix: np.ndarray, length: int) -> np.ndarray:
    """``(S, Cout, L)`` vectors of a ``(Cout, rows)`` matrix, the last run zero-padded."""
    cout, rows = matrix.shape
    segments = -(-rows // length)
    padded = np.zeros((cout, segments * length), dtype=np.float32)
    padded[:, :rows] = matrix
    return np.ascontiguousarray(padded.reshape(cout, segments, length).transpose(1, 0, 2))


def codes(pool: np.ndarray, index: np.ndarray, error: np.ndarray | None, multiplier: int, rows: int) -> np.ndarray:
    """The integer codes ``(Cout, rows)`` (int64) of one layer (module doc)."""
    q = multiplier * pool[index].astype(np.int64)  # (S, Cout, L)
    if error is not None:
        q = q + error.astype(np.int64)
    segments, cout, length = q.shape
    return q.transpose(1, 0, 2).reshape(cout, segments * length)[:, :rows]


def _normalised(matrix: np.ndarray, per_column: bool) -> np.ndarray:
    """``matrix`` divided by its mean ``|W|`` (per row = output column when ``per_column``)."""
    mean = np.abs(matrix).mean(axis=1, keepdims=True) if per_column else np.abs(matrix).mean()
    return (matrix / np.maximum(mean, np.float32(1e-12))).astype(np.float32)


def _signs(x: np.ndarray) -> np.ndarray:
    """``sign(x)`` as int8 with ``+1`` for 0."""
    return np.where(x >= 0, 1, -1).astype(np.int8)


def assign(u: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """``argmax_k ⟨u_n, p_k⟩`` for every row of ``u (N, L)`` (first ``k`` on a tie), int64."""
    p = pool.astype(np.float32).T
    return np.concatenate([np.argmax(u[i:i + BLOCK] @ p, axis=1) for i in range(0, u.shape[0], BLOCK)]
                          or [np.zeros(0, dtype=np.int64)]).astype(np.int64)


def build_pool(u: np.ndarray, size: int, seed: int = SEED, rounds: int = ROUNDS) -> np.ndarray:
    """Binary k-means of the vectors ``u (N, L)``: ``(size, L)`` int8 ``±1`` (module doc)."""
    rng = np.random.default_rng(seed)
    start = rng.choice(u.shape[0], size=size, replace=u.shape[0] < size)
    pool = _signs(u[start])
    index = assign(u, pool)
    for _ in range(rounds):
        sums = np.stack([np.bincount(index, weights=u[:, t], minlength=size) for t in range(u.shape[1])], 1)
        used = np.bincount(index, minlength=size) > 0
        pool = np.where(used[:, None], _signs(sums), pool).astype(np.int8)
        new = assign(u, pool)
        if np.array_equal(new, index):
            break
        index = new
    return pool


def _fit_scale(w: np.ndarray, q: np.ndarray, per_column: bool) -> np.ndarray:
    """Least-squares ``α = ⟨W, q⟩ / ⟨q, q⟩`` over ``(S, Cout, L)`` arrays, per column or layer."""
    axes = (0, 2) if per_column else None
    num = np.sum(w.astype(np.float64) * q, axis=axes)
    den = np.sum(q.astype(np.float64) ** 2, axis=axes)
    alpha = np.where(den > 0, num / np.maximum(den, 1.0), 0.0)
    alpha = np.maximum(alpha, np.finfo(np.float32).tiny)  # a positive step; an all-zero layer keeps tiny
    return np.atleast_1d(alpha).astype(np.float32)


def _error(w: np.ndarray, base: np.ndarray, alpha: np.ndarray, mask: np.ndarray, prune: float) -> np.ndarray:
    """The error codes ``sign(W/α − A·p)`` on real rows, with the ``prune`` fraction of
    positions whose error term removes the least squared error set to 0."""
    a = alpha.reshape(1, -1, 1)
    e = (_signs(w / a - base) * mask).astype(np.int8)
    gain = np.sum((w - a * base) ** 2 - (w - a * (base + e)) ** 2, axis=2)  # (S, Cout)
    drop = int(np.floor(prune * gain.size))
    if drop:
        order = np.argsort(gain, axis=None, kind="stable")[:drop]
        e.reshape(-1, e.shape[2])[order] = 0
    return e


def fit_layer(matrix: np.ndarray, pool: np.ndarray, index: np.ndarray, config: PoolConfig) -> PooledLayer:
    """Scale and error term of one layer ``(Cout, rows)`` given its indices (module doc)."""
    rows = matrix.shape[1]
    w = vectors(matrix, config.vector_length)
    mask = vectors(np.ones((1, rows), dtype=np.float32), config.vector_length)  # (S, 1, L)
    base = (config.multiplier * pool[index]).astype(np.float32) * mask
    alpha = _fit_scale(w, base, config.per_column)
    if not config.error_bits:
        return PooledLayer(index, None, alpha)
    e = np.zeros(base.shape, dtype=np.int8)
    for _ in range(FIT_ROUNDS):
        e = _error(w, base, alpha, mask, config.error_prune)
        alpha = _fit_scale(w, base + e, config.per_column)
    return PooledLayer(index, e, alpha)


def pool_layers(matrices: list[np.ndarray], config: PoolConfig) -> tuple[np.ndarray, list[PooledLayer]]:
    """The pool and every layer's share of it, for ``(Cout, rows)`` weight matrices."""
    vecs = [vectors(_normalised(m, config.per_column), config.vector_length) for m in matrices]
    flat = np.concatenate([v.reshape(-1, config.vector_length) for v in vecs])
    pool = build_pool(flat, config.pool_size)
    layers = []
    for m, v in zip(matrices, vecs, strict=True):
        index = assign(v.reshape(-1, config.vector_length), pool).reshape(v.shape[:2])
        layers.append(fit_layer(m, pool, index, config))
    return pool, layers


def effective_weights(layer: PooledLayer, pool: np.ndarray, multiplier: int, rows: int) -> np.ndarray:
    """``fl32(α · q)`` of shape ``(Cout, rows)``."""
    q = codes(pool, layer.index, layer.error, multiplier, rows).astype(np.float32)
    return (q * layer.scale.reshape(-1, 1)).astype(np.float32)
