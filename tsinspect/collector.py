"""Pausing Python's cyclic garbage collector while large acyclic structures are built.

Decoding an archive's pickles, parsing its code and decoding an IR make hundreds of thousands of containers
that never form cycles; every full collection on the way scans all of them again (a third of ``info``'s
time on an archive of 10,000 parameters). Reference counting still frees them.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
