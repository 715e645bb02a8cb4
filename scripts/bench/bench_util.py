"""Shared by the benchmark drivers: run a command to completion and measure it."""

import os
import subprocess
import sys
import time


def run_measured(command, env=None, capture=False):
    """Runs `command`; returns (wall seconds, peak RSS in MiB, stdout if `capture`).
    Exits with the command's stderr if it fails."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env, text=True)
    stdout = child.stdout.read() if capture else ""
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])}: {command[0]} failed:\n{stderr[-4000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout  # ru_maxrss is in KiB on Linux
