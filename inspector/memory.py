"""Keep freed memory in the heap of a process that only measures (no model).

`measure` makes a few dozen arrays of 0.1-50 MB per image. glibc's malloc serves blocks
above its mmap threshold (128 KiB, raised as large blocks are freed, to 32 MiB at most)
with fresh mappings, and gives the top of the heap back to the system past its trim
threshold; so each image faults its working set in again, page by page, from zeroed
memory. Raising both thresholds keeps that memory for the next image: about 15 % less
CPU per 1 MP image (`benchmarks/evidence_bench.py --speed` measures both). The process
then holds its peak (about 0.5 GB for a 12 MP image) until it ends.

Only `analyze` and its workers call this, and the benchmarks: the app's process keeps
glibc's defaults, where the model's weights and the report's RSS budget matter. It lasts
for the life of the process: a notebook that runs `analyze` in its own process (one
worker) keeps the setting for what it runs after. An
allocator such as jemalloc or tcmalloc would do the same, but only when preloaded before
the process starts (LD_PRELOAD), which a pip-installed package cannot do for its users;
`mallopt` is glibc's own call for this, made through ctypes.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# A 12 MP image's float32 luminance is 48 MB: below this, so it comes from the heap.
MMAP_THRESHOLD = 64 * 2**20
TRIM_THRESHOLD = 256 * 2**20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; False where it is not glibc."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):  # musl and others: no libc.so.6, or no mallopt
                _applied = False
    return _applied
