"""Shared by the benchmark drivers: run a command to completion and measure it.

The command is started by a small launcher process (this file, `--measure`),
not by the driver itself: a process forked from a big one keeps that one's
peak RSS in its own (`ru_maxrss` survives `exec`), so a driver holding a
million rows in pandas would otherwise add them to every figure it measures.
"""

import json
import os
import subprocess
import sys
import tempfile
import time


def run_measured(command, env=None, capture=False):
    """Runs `command`; returns (wall seconds, peak RSS in MiB, stdout if `capture`).
    Exits with the command's stderr if it fails."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        launcher = [sys.executable, os.path.abspath(__file__), "--measure", result.name, "--", *command]
        done = subprocess.run(launcher, env=env, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            sys.exit(f"{os.path.basename(sys.argv[0])}: {command[0]} failed:\n{done.stderr[-4000:]}")
        measured = json.loads(open(result.name).read())
    return measured["seconds"], measured["rss_mib"], done.stdout if capture else ""


def cpu_has_fast_bf16():
    """AVX-512 BF16 or AMX, as kiln's `precision = "auto"` decides (from LibTorch's cpuinfo; here /proc/cpuinfo)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _measure(result_path, command):
    """The launcher: runs `command` with this process's streams, writes its time and peak RSS."""
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    with open(result_path, "w") as out:
        json.dump({"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024}, out)  # ru_maxrss is in KiB on Linux
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__" and len(sys.argv) > 3 and sys.argv[1] == "--measure" and sys.argv[3] == "--":
    _measure(sys.argv[2], sys.argv[4:])
