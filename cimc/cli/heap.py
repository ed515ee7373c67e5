"""The garbage collector of a ``cimc`` command, a short process that allocates few reference
cycles.

CPython's cyclic collector runs a young collection every 700 net allocations of container
objects and, now and then, a full one that walks every live object, the tens of thousands the
imports made (modules, classes, functions, pydantic schemas) among them; on ``cimc compile
vgg9`` that was about 0.15 s of CPU, most in the walks over objects that live as long as the
process. ``settle_imports`` moves the objects alive after the imports out of the collector's
reach (``gc.freeze``: never walked, never freed, as they would not have been) and collects the
young generation every ``YOUNG`` allocations. Memory is still freed by reference counting when
the last reference goes; only garbage in cycles waits a little longer for its collection.
"""

from __future__ import annotations

import gc

#: Net allocations of container objects between young collections (CPython's default: 700).
YOUNG = 10_000


def settle_imports() -> None:
    """Freeze every object alive now (call it after a command's imports) and collect the young
    generation every ``YOUNG`` allocations (module doc)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
