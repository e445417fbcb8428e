"""A process's own peak memory.

`wait4`'s ru_maxrss is not it: Linux carries the peak of the process that forked it across the exec, so a
child of a large process (a test runner, a benchmark that has imported torch) reports at least its parent's
peak. The kernel's VmHWM in /proc/PID/status is the peak of the process's own address space; it is read
until the process exits (it only grows, so the last reading is the peak, to within the polling interval).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

POLL_S = 0.01


def wait_for_peak(process: subprocess.Popen) -> tuple[int, int]:
    """Wait for `process` to end: its exit code and its peak resident memory in bytes (0 where /proc is missing)."""
    status_file, peak = Path(f"/proc/{process.pid}/status"), 0
    while process.poll() is None:
        try:
            status = status_file.read_text()
        except OSError:  # it ended between poll() and the read
            break
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) * 1024)
        time.sleep(POLL_S)
    return process.wait(), peak
