"""Telling glibc's allocator to keep freed memory for reuse: attack steps free and allocate the same
few large tensors over and over, and page-faulting them back each time costs a share of each step."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from functools import lru_cache
from typing import Mapping, Optional

KEEP_FREED_MEMORY_ENV = "ADVCLI_KEEP_FREED_MEMORY"
_GLIBC_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
_MMAP_ABOVE_BYTES = 64 << 20  # blocks this large still come from, and go back to, the system at once
_RETAINED_BYTES = 256 << 20  # freed memory kept at most


def keep_freed_memory(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Tell glibc's allocator to keep freed memory for reuse instead of handing it back to the system.

    Every attack step allocates and frees the same few tensors of several MiB. By default glibc
    may serve such blocks with fresh pages and return them on free, depending on what the process
    did before, so a step can pay for page faults and zeroing again: in A/B runs on a 2-core CPU a
    float32 attack loop ran 1.34x as fast with this setting and a loop of bfloat16 input gradients
    1.3x (benchmarks/README.md). This is the reuse that jemalloc or tcmalloc would give; it applies to
    the whole process, so the ``advcli`` command calls it and a library caller may choose to.
    The process then holds on to at most 256 MiB of memory it has freed.

    Does nothing where glibc is not the allocator, where the environment already tunes it
    (``MALLOC_*_`` variables, ``GLIBC_TUNABLES`` or another allocator in ``LD_PRELOAD``), or when
    ``ADVCLI_KEEP_FREED_MEMORY=0``. Returns what was done, or None.
    """
    environ = os.environ if environ is None else environ
    if environ.get(KEEP_FREED_MEMORY_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if any(name in environ for name in _GLIBC_MALLOC_ENV) or "malloc" in environ.get("GLIBC_TUNABLES", ""):
        return None
    if any(name in environ.get("LD_PRELOAD", "") for name in _OTHER_ALLOCATORS):
        return None
    libc = _glibc()
    if libc is None:
        return None
    if not (libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_ABOVE_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD, _RETAINED_BYTES)):
        return None
    return (f"glibc keeps up to {_RETAINED_BYTES >> 20} MiB of freed memory for reuse "
            f"(blocks under {_MMAP_ABOVE_BYTES >> 20} MiB)")


@lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    """This process's C library when it is glibc (which has ``mallopt``), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc
