"""The host allocator for the training input pipeline: record-sized buffers reused, not mapped anew.

Each training example reads one whole record (2.4 MB at 5 fps, 10 MB at 25 fps) into a fresh
buffer. glibc's malloc serves blocks that size with mmap (its threshold starts at 128 KiB and
adapts only up to 32 MiB after frees it sees), so every record costs a new mapping, a page
fault per 4 KiB page and the kernel zeroing it: on the bench this was half the CPU time of
reading a record (docs/benchmarks.md). Raising the mmap threshold above a record keeps such
blocks in malloc's heap, where the next record reuses them; the trim threshold and top pad
keep freed heap memory for that reuse instead of handing it back to the kernel each time.
TensorFlow's own guidance reaches the same end with tcmalloc (LD_PRELOAD); this needs no
extra library. The settings are process wide and only ever raise memory kept for reuse,
bounded by the thresholds (tens of MB per malloc arena). Linux/glibc only; elsewhere a no-op.
"""
import ctypes
import ctypes.util
import logging

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
# The largest mmap threshold glibc accepts on 64-bit hosts (HEAP_MAX_SIZE / 2): blocks up to
# it come from the heap, so records up to 32 MB (25 fps at a 256 short side is ~10 MB) do.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
TOP_PAD = 64 << 20

_tuned = None


def tune_allocator() -> bool:
    """Apply the settings once per process; True when glibc took them."""
    global _tuned  # pylint: disable=global-statement
    if _tuned is None:
        _tuned = _mallopt({_M_MMAP_THRESHOLD: MMAP_THRESHOLD, _M_TRIM_THRESHOLD: TRIM_THRESHOLD,
                           _M_TOP_PAD: TOP_PAD})
        logging.info("host allocator %s (mmap threshold %d MiB)",
                     "tuned for record-sized buffers" if _tuned else "left as it is (not glibc)",
                     MMAP_THRESHOLD >> 20)
    return _tuned


def trim_heap() -> bool:
    """Hand the heap's free memory back to the kernel (malloc_trim): glibc keeps it
    otherwise, so a server's RSS would not show an unloaded model's memory coming back.
    False where the C library is not glibc (the memory is then reused, only not returned)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _glibc():
    """The C library when it is glibc (whose mallopt and malloc_trim these are), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return libc if hasattr(libc, "gnu_get_libc_version") else None
    except (OSError, TypeError):
        return None


def _mallopt(settings) -> bool:
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(parameter, value) == 1 for parameter, value in settings.items())
