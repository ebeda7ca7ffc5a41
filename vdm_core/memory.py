"""Keep freed memory in the process heap, so that each denoising step reuses the last one's.

glibc's malloc serves large blocks (above a threshold that adapts up to 32 MiB) with fresh
`mmap` pages and returns them to the OS on `free`, and trims free memory off the top of the
heap. A step that keeps its activations alive for a backward pass (reconstruction guidance,
training) then faults in every page it touches again on each call: about 10,000 page faults
and 10-15% of a reconstruction-guidance step on the default model (`bench/bench_unet.py`).
With the thresholds fixed high, freed blocks stay in the heap and the next step reuses them;
the resident memory stays at its peak instead of shrinking between steps.
"""

import ctypes
import functools

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value: blocks up to 32 MiB stay in the heap
TRIM_THRESHOLD = 2**31 - 1  # never trim the top of the heap


@functools.cache
def retain_freed_memory() -> bool:
    """Set malloc's mmap and trim thresholds once per process; False where there is no glibc
    `mallopt` (macOS, Windows, musl), which leaves the allocator as it was."""
    try:
        process = ctypes.CDLL(None)  # the symbols already loaded, the C library's among them
    except (OSError, TypeError):  # TypeError: Windows has no such handle
        return False
    mallopt = getattr(process, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
