"""The search space: per CIM layer, weight and input bits (and optionally ADC bits) from
candidate sets.

A configuration is a tuple with one ``(w_bits, a_bits, adc_bits)`` triple per CIM layer, in
the compiled graph's topological order. With ``L`` layers and candidate sets ``W``, ``A``,
``C`` the space holds ``(|W|·|A|·|C|)^L`` configurations; ``C`` is the macro's ADC bits
alone unless ADC bits are searched too. ``layer_bits`` turns a configuration into the
``{layer: {w_bits, a_bits, adc_bits}}`` mapping that ``cimc compile --bits`` reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cimc.errors import UsageError
from cimc.options import OPTIONS

LayerChoice = tuple[int, int, int]
Config = tuple[LayerChoice, ...]

DEFAULT_W_BITS = (2, 3, 4, 5, 6, 8)
DEFAULT_A_BITS = (2, 3, 4, 6, 8)


@dataclass(frozen=True)
class SearchSpace:
    """Layer names (topological order) and the sorted candidate bits of each dimension."""

    layers: tuple[str, ...]
    w_choices: tuple[int, ...] = DEFAULT_W_BITS
    a_choices: tuple[int, ...] = DEFAULT_A_BITS
    adc_choices: tuple[int, ...] = (5,)

    def __post_init__(self) -> None:
        if not self.layers:
            raise UsageError("the model has no CIM layers: there are no bits to search",
                             hint="pass --map-fc to map Gemm/MatMul layers too")
        for name, values, key in (("weight", self.w_choices, "w_bits"), ("input", self.a_choices, "a_bits"),
                                  ("ADC", self.adc_choices, "adc_bits")):
            o = OPTIONS[key]
            if not values or any(not o.low <= v <= o.high for v in values):  # type: ignore[operator]
                raise UsageError(f"{name} bit candidates {list(values)} must be non-empty and within "
                                 f"{o.describe().removeprefix('an integer in ')}")
            if tuple(sorted(set(values))) != tuple(values):
                raise UsageError(f"{name} bit candidates {list(values)} must be sorted and distinct")

    @property
    def dims(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return self.w_choices, self.a_choices, self.adc_choices

    def size(self) -> int:
        return (len(self.w_choices) * len(self.a_choices) * len(self.adc_choices)) ** len(self.layers)

    def uniform(self, w_bits: int, a_bits: int, adc_bits: int | None = None) -> Config:
        """Every layer at the same bits (ADC: the widest candidate unless given)."""
        adc = self.adc_choices[-1] if adc_bits is None else adc_bits
        return tuple((w_bits, a_bits, adc) for _ in self.layers)

    def widest(self) -> Config:
        return self.uniform(self.w_choices[-1], self.a_choices[-1])

    def from_fractions(self, fractions: Sequence[float]) -> LayerChoice:
        """One layer's bits from actions in [0, 1], one per dimension (HAQ's mapping over the
        candidate list: index ``min(floor(a·n), n − 1)``); missing actions take the widest."""
        picked = []
        for i, values in enumerate(self.dims):
            a = float(fractions[i]) if i < len(fractions) else 1.0
            index = min(math.floor(min(max(a, 0.0), 1.0) * len(values)), len(values) - 1)
            picked.append(values[index])
        return picked[0], picked[1], picked[2]

    def layer_bits(self, config: Config) -> dict[str, dict[str, int]]:
        return {name: {"w_bits": w, "a_bits": a, "adc_bits": c} for name, (w, a, c) in zip(self.layers, config,
                                                                                           strict=True)}

    def contains(self, config: Config) -> bool:
        """Whether every layer's bits of ``config`` are candidates of the space."""
        return len(config) == len(self.layers) and all(
            w in self.w_choices and a in self.a_choices and c in self.adc_choices for w, a, c in config)

    def check(self, config: Config) -> None:
        if len(config) != len(self.layers):
            raise UsageError(f"a configuration has {len(config)} layers, the model {len(self.layers)}")


def parse_choices(text: str, what: str) -> tuple[int, ...]:
    """``"2,3,4,8"`` → ``(2, 3, 4, 8)`` (sorted, distinct)."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"bad {what} bit candidates '{text}'", hint="use a comma-separated list such as 2,3,4,8") \
            from None
    if not values:
        raise UsageError(f"no {what} bit candidates in '{text}'")
    return tuple(values)
