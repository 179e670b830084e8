"""Process tuning for the renderers: single-threaded BLAS, a glibc allocator that keeps its scratch memory."""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

#: glibc malloc: keep freed memory up to this much instead of handing it back to the OS at once.
MALLOC_TRIM_BYTES = 64 << 20
#: glibc malloc: serve allocations below this size from the heap (not a fresh mmap each time).
MALLOC_MMAP_BYTES = 16 << 20


@functools.cache
def limit_blas_threads() -> None:
    """Run BLAS single-threaded in this process (once).

    The products here are small; on a busy 2-core machine OpenBLAS's thread pool
    made them 20× *slower* (measured), and threads fighting the audio callback
    for CPU cause underruns. Uses threadpoolctl when installed.
    """
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        log.debug("threadpoolctl not installed: BLAS keeps its default thread count")
        return
    threadpool_limits(1, user_api="blas")


@functools.cache
def tune_allocator() -> bool:
    """Stop glibc from returning the renderer's scratch arrays to the OS after every render (once per process).

    A span's temporaries are a few hundred kB each; with glibc's defaults every
    one is a fresh mmap (or a trimmed heap top), so each render page-faults all
    of them in again: measured here as ~3 µs a page, 40 % of the render's time.
    Keeping up to 64 MB of freed heap removes that. No-op off glibc.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_trim_threshold, MALLOC_TRIM_BYTES) and libc.mallopt(m_mmap_threshold, MALLOC_MMAP_BYTES)
    except (OSError, AttributeError):
        return False
    return bool(ok)
