"""Cyclic garbage collection paused around the plugin's own bulk work (no pytest here).

Loading a question file of 10,000 questions, building its items and rendering the
reports make hundreds of thousands of objects that live on and form no cycles. Each
collection the allocations trigger meanwhile scans the whole heap (pytest's items, the
imported libraries) to find nothing: with collection on, loading a big YAML file took
twice as long. Only our own code runs inside a pause (and the
``pytest_rageval_update_report`` hook, which edits the report), never the app, a judge or
a test: nothing that makes cyclic garbage runs with the collector off.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic garbage collection inside (also a decorator); collection is back on
    after, unless it was off already."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
