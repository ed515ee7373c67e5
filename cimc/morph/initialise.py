"""Slicing parameter arrays along a channel axis, and initialising the new channels.

``gather`` takes old channels by a ``ChannelMap`` (a flattened feature axis spans ``mult``
features per channel). New channels are initialised in one of two ways:

* ``random`` (default): a new filter (output channel) is drawn ``N(0, σ²)`` with ``σ`` the
  standard deviation of the layer's weights; a consumer's new input column is drawn
  ``N(0, (ε·σ)²)`` with ``ε = scale``; a new BN channel has ``γ = ε·median|γ|``, ``β = 0``,
  ``μ = 0``, ``σ² = 1``; new biases are 0, new per-channel constants the op's identity.
  New channels thus start small but trainable (their gradients are not zero).
* ``copy``: Net2Net widening — a new channel copies the parameters of a kept channel of its
  group (filters with multiplicative noise ``1 + noise·N(0, 1)``), and every consumer's
  input columns of a replicated class are divided by its number of replicas. With
  ``noise = 0`` the widened model computes exactly what the pruned one did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cimc.morph.layout import ChannelMap


@dataclass
class NewChannels:
    """How new channels are initialised (see the module docstring)."""

    mode: str = "random"
    scale: float = 0.1
    noise: float = 0.01
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def filters(self, w: np.ndarray, axis: int, cmap: ChannelMap, mult: int = 1) -> np.ndarray:
        """Output side of a layer's weight: new filters random, or noisy copies."""
        out = gather(w, axis, cmap, mult)
        sel = _selector(out.ndim, axis, cmap.expand(np.flatnonzero(cmap.new), mult))
        if self.mode == "copy":
            out[sel] *= 1 + self.noise * self.rng.standard_normal(out[sel].shape)
        else:
            out[sel] = self.rng.normal(0.0, _sigma(w), out[sel].shape)
        return out

    def columns(self, w: np.ndarray, axis: int, cmap: ChannelMap, mult: int = 1) -> np.ndarray:
        """Input side of a layer's weight: new columns small random, or split copies."""
        out = gather(w, axis, cmap, mult)
        if self.mode == "copy":
            shape = [1] * out.ndim
            shape[axis] = -1
            return out / np.repeat(cmap.replicas, mult).reshape(shape).astype(out.dtype)
        sel = _selector(out.ndim, axis, cmap.expand(np.flatnonzero(cmap.new), mult))
        out[sel] = self.rng.normal(0.0, self.scale * _sigma(w), out[sel].shape)
        return out

    def constant(self, values: np.ndarray, axis: int, cmap: ChannelMap, fill: float) -> np.ndarray:
        """A per-channel constant (bias, BN β/μ/σ², Add/Mul operand): new = ``fill`` or copies."""
        out = gather(values, axis, cmap)
        if self.mode != "copy":
            out[_selector(out.ndim, axis, np.flatnonzero(cmap.new))] = fill
        return out

    def gamma(self, gamma: np.ndarray, cmap: ChannelMap) -> np.ndarray:
        kept = np.abs(gamma[cmap.old[~cmap.new]]) if (~cmap.new).any() else np.abs(gamma)
        return self.constant(gamma, 0, cmap, self.scale * float(np.median(kept)) if kept.size else self.scale)


def gather(arr: np.ndarray, axis: int, cmap: ChannelMap, mult: int = 1) -> np.ndarray:
    """``arr`` with axis ``axis`` re-indexed by ``cmap.src`` (a writable copy)."""
    return np.take(arr, cmap.expand(cmap.src, mult), axis=axis).copy()


def _selector(ndim: int, axis: int, index: np.ndarray) -> tuple[slice | np.ndarray, ...]:
    sel: list[slice | np.ndarray] = [slice(None)] * ndim
    sel[axis] = index
    return tuple(sel)


def _sigma(w: np.ndarray) -> float:
    sigma = float(np.std(w)) if w.size else 0.0
    return sigma if sigma > 0 else 1.0 / np.sqrt(max(1, w.size // max(1, w.shape[0])))
