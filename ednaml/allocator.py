"""The C allocator's policy for the `ednaml` command.

glibc serves each allocation above its mmap threshold with a fresh mapping and unmaps it when it is
freed. The threshold starts at 128 KiB and rises only when such a mapped block is freed, so where it
ends up depends on what a process happened to allocate and free before. A training step whose
temporaries change size from step to step (padded text batches) then had each of them mapped, faulted
in and unmapped again, every step: EdnaML's text steps took 10-14 % longer than the same steps in a
process whose start-up had left the threshold higher. The `ednaml` command fixes both thresholds, as
`MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` would (see docs/performance.md); a user's own
setting of either (or of their GLIBC_TUNABLES), or another allocator preloaded, is left alone.
"""

from __future__ import annotations

import os
from typing import Any

MMAP_THRESHOLD = 32 * 2**20  # glibc's own ceiling for its moving threshold on 64-bit machines
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc pairs with it when it moves the threshold itself
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)

applied: dict[str, Any] = {}  # the thresholds tune() set, or the user's own settings it found


def tune() -> None:
    """Fix glibc's mmap and trim thresholds for this process (and the data loader workers it forks)."""
    if applied or not _glibc():
        return
    if own := _users_settings():
        applied.update(own)  # the user's: read by glibc as the process started, or another allocator
        return
    import ctypes

    libc = ctypes.CDLL(None)
    if libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        applied.update(mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD)


def describe() -> dict[str, Any] | str:
    """The thresholds in effect, for provenance.json: what tune() set, the user's own settings, or "default"."""
    return dict(applied) or _users_settings() or "default"


def _users_settings() -> dict[str, str]:
    own = {
        name: os.environ[name] for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if name in os.environ
    }
    if any(f"glibc.malloc.{what}_threshold" in os.environ.get("GLIBC_TUNABLES", "") for what in ("mmap", "trim")):
        own["GLIBC_TUNABLES"] = os.environ["GLIBC_TUNABLES"]
    if "MALLOC" in os.environ.get("LD_PRELOAD", "").upper():  # jemalloc, tcmalloc, mimalloc: not glibc's
        own["LD_PRELOAD"] = os.environ["LD_PRELOAD"]
    return own


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a glibc system
        return False


def release() -> None:
    """Hand the heap's free memory back to the system as the process ends (glibc's `malloc_trim`, about
    10 ms): the trim threshold lets the heap keep up to TRIM_THRESHOLD of freed memory through the run,
    and the process's exit adds to its resident memory after Python's last handler, so an untrimmed end
    was often the run's peak."""
    if applied.get("trim_threshold") == TRIM_THRESHOLD:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
