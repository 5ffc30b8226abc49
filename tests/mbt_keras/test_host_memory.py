"""The host allocator tuning: record-sized blocks come from malloc's heap, not a fresh mmap."""
import os
import subprocess
import sys

import pytest

from mbt_keras import host_memory

# A fresh interpreter (the tuning is process wide): malloc a 10 MB block, the size of a 25 fps
# record, and report how many new blocks malloc holds as separate mappings (mallinfo's hblks).
_PROBE = """
import ctypes, ctypes.util, sys
from mbt_keras import host_memory
if sys.argv[1] == "tuned":
    assert host_memory.tune_allocator()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc.mallinfo.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = libc.mallinfo().hblks
block = libc.malloc(10 << 20)
print(libc.mallinfo().hblks - before)
libc.free(block)
"""


def _mapped_blocks(mode):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                            check=True, cwd=root)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_record_sized_blocks_come_from_the_heap_once_tuned():
    assert _mapped_blocks("default") == 1  # glibc's 128 KiB threshold: its own mapping
    assert _mapped_blocks("tuned") == 0    # under the raised threshold: heap memory, reused


def test_tuning_is_applied_once_and_reports_the_same_answer():
    first = host_memory.tune_allocator()
    assert host_memory.tune_allocator() is first
