"""The `ednaml` command's allocator policy: large blocks come from the reused heap, not a fresh mapping each
time; a user's own MALLOC_ settings win; provenance.json says which applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import GLIBC

PROBE = """
import ctypes, json
from ednaml import allocator
if {tune}:
    allocator.tune()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(4 << 20)  # a training step's temporary: 4 MiB
heap = [line.split()[0] for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")][0]
low, high = (int(end, 16) for end in heap.split("-"))
print(json.dumps({{"from_heap": low <= block < high, "applied": allocator.applied}}))
"""


def probe(tune: bool, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(tune=tune)], env={**clean, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt: Linux with glibc")
def test_large_blocks_come_from_the_heap_once_tuned_and_the_users_settings_win():
    assert probe(False) == {"from_heap": False, "applied": {}}  # glibc's default: a fresh mapping for 4 MiB
    assert probe(True) == {"from_heap": True, "applied": {"mmap_threshold": 32 << 20, "trim_threshold": 64 << 20}}
    own = probe(True, MALLOC_MMAP_THRESHOLD_="1048576")  # the user's threshold (1 MiB), read by glibc at start
    assert own == {"from_heap": False, "applied": {"MALLOC_MMAP_THRESHOLD_": "1048576"}}
    tunable = "glibc.malloc.mmap_threshold=1048576"
    assert probe(True, GLIBC_TUNABLES=tunable) == {"from_heap": False, "applied": {"GLIBC_TUNABLES": tunable}}


RELEASE = """
import ctypes, json
from ednaml import allocator
allocator.tune()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def resident_mb():
    return int([line for line in open("/proc/self/status") if line.startswith("VmRSS")][0].split()[1]) // 1024
blocks = [libc.malloc(1 << 20) for _ in range(48)]  # a step's temporaries, touched, then freed
for block in blocks:
    ctypes.memset(block, 1, 1 << 20)
for block in reversed(blocks):
    libc.free(block)
kept = resident_mb()
allocator.release()
print(json.dumps({"kept": kept, "after": resident_mb()}))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc_trim: Linux with glibc")
def test_the_heaps_free_memory_kept_through_the_run_is_handed_back_as_the_command_ends():
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    result = subprocess.run([sys.executable, "-c", RELEASE], env=clean, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sizes = json.loads(result.stdout)
    assert sizes["kept"] - sizes["after"] >= 40, sizes  # the 48 MiB freed stayed in the heap until release()
