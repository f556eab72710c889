"""Memory allocator settings that keep a long-running collector's RSS flat under steady load.

Three allocators share the process, and each by default holds on to memory it has freed:

- glibc's malloc (Python's larger objects, the WAL's segment reads): by default up to 8 arenas
  per core, one per allocating thread, and an mmap threshold that rises to the largest buffer
  freed so far, after which multi-megabyte buffers are carved from the heap and leave holes.
- jemalloc, linked into deltalake's Rust core (each commit loads the table's log): by default
  4 arenas per core, returning freed pages only after 10 s.
- Arrow's default pool (mimalloc), which parses each committed segment: it keeps freed pages.

BENCHMARKS.md ("Collector", the 2026-12-04 afternoon round) has the soaks that chose them.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers
M_ARENA_MAX = -8
MALLOC_ARENAS = 2
# a fixed threshold (setting one turns off the rising one): larger buffers are mapped and go
# back to the system when freed. It must stay above asyncio's socket read buffer (256 KiB, and
# Python's bytes header): every read allocates one and shrinks it to what arrived, so at or below
# the threshold each request's read became an mmap, an mremap and an munmap (about 18 us a
# request on the 2-core bench machine while the heap was small).
MMAP_THRESHOLD_BYTES = 512 * 1024
# deltalake's jemalloc (built with the `_rjem_` prefix) reads its settings from this variable
# when the library loads: one arena, freed pages returned after a second
DELTALAKE_JEMALLOC_ENV = "_RJEM_MALLOC_CONF"
DELTALAKE_JEMALLOC_CONF = "narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0"
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def tune_allocators() -> dict[str, bool]:
    """Apply the settings; which ones took (glibc's only where the C library is glibc).

    Call before deltalake is imported. Settings given in the environment are left alone.
    """
    return {
        "glibc": _tune_glibc(),
        "deltalake": _tune_deltalake_jemalloc(),
        "arrow": _use_system_pool_for_arrow(),
    }


def _tune_glibc() -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
        arenas = libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        threshold = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        return False
    return bool(arenas and threshold)


def _tune_deltalake_jemalloc() -> bool:
    if "deltalake" in sys.modules:
        return False  # its allocator has read its settings already
    os.environ.setdefault(DELTALAKE_JEMALLOC_ENV, DELTALAKE_JEMALLOC_CONF)
    return True


def _use_system_pool_for_arrow() -> bool:
    """Arrow's buffers (the commit's parsed segments) from the C library's malloc, unless the
    environment chose a pool."""
    if os.environ.get(ARROW_POOL_ENV):
        return False
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    return True
