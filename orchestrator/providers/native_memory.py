"""Giving freed heap memory back to the system (glibc's malloc_trim), after a burst of large allocations.

glibc keeps freed memory in its heaps for reuse: after the local embedder computes a batch, its
activations (tens of MB) stay counted in the process's resident memory until the next batch reuses them.
Trimming after each batch keeps the ingestion process at its steady size between batches, for about 3 ms
of page faults per text (measured here); making every large allocation an mmap instead
(MALLOC_MMAP_THRESHOLD_=1 MB) held the same memory for 15 ms of page faults per text.
"""

from __future__ import annotations

import ctypes
import functools

# Loads of more than this: the heap they leave behind is handed back (`release_after`).
TRIM_BYTES = 64 * 2**20


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    # The symbols already loaded in this process, not ctypes.util.find_library("c"): that runs ldconfig in
    # a child process, which gevent cannot watch from the thread pool where the embedder computes.
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_freed() -> bool:
    """Return the free memory of every malloc arena to the system; False where that cannot be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def release_after(loaded_bytes: int) -> None:
    """After a big load was turned into something smaller (a store's postings merged, its vectors
    stacked): thousands of freed blobs of tens of KB stay in the heap, below malloc's threshold for pages of
    their own, so a million-chunk store's first search left a process holding ~1 GB it no longer used."""
    if loaded_bytes > TRIM_BYTES:
        release_freed()
