"""Topological order of items given by index, and one cycle when there is none.

``deps[i]`` holds the indices item ``i`` reads from (``i`` itself included when it reads its own
output: a cycle of length one). ``topological(deps)`` is Kahn's algorithm with a heap: every
index after all of its dependencies, and among the items ready at a step the smallest index
first, so a list that is already in order keeps it. On a cycle the order is shorter than
``deps``; ``cycle(deps, done)`` then walks one among the items left out. Both run in
``O((V + E) log V)``; the IR graph and the ONNX importer order their nodes with them.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence


def topological(deps: Sequence[Collection[int]]) -> list[int]:
    """The indices in dependency order, smallest first among the ready ones; shorter than
    ``deps`` exactly when the items hold a cycle."""
    readers: list[list[int]] = [[] for _ in deps]
    for i, ds in enumerate(deps):
        for d in ds:
            readers[d].append(i)
    waiting = [len(ds) for ds in deps]
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for r in readers[i]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    return order


def cycle(deps: Sequence[Collection[int]], done: Collection[int]) -> list[int]:
    """One cycle among the items ``topological`` left out (``done`` holds those it ordered), in
    dependency order, its first item repeated at the end; empty when every item is done.

    Every item left out has a dependency that is left out too, so walking back from the smallest
    one (always to the smallest such dependency) must revisit an item: the walk from that item
    on, reversed, is the cycle."""
    left = [i for i in range(len(deps)) if i not in done]
    if not left:
        return []
    path: list[int] = []
    seen: dict[int, int] = {}
    item = left[0]
    while item not in seen:
        seen[item] = len(path)
        path.append(item)
        item = min(d for d in deps[item] if d not in done)
    loop = path[seen[item]:][::-1]
    return [*loop, loop[0]]
