"""A private jackd (dummy backend) for benchmarks, realtime when the machine allows it.

Benchmarks measure the bridge, not the scheduler: a non-realtime jackd on a loaded
2-core VM misses its own deadlines (about one xrun per 10 s here when idle), so
this asks for SCHED_FIFO first (``-R``) and falls back to ``--no-realtime``, and
says which it got. Tests keep ``--no-realtime``: it runs everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid


def start_jackd(
    rate: int = 48_000, period: int = 256, realtime: bool = True
) -> tuple[subprocess.Popen[bytes], str, bool]:
    """Start jackd; return ``(process, server name, realtime)``. Sets JACK_DEFAULT_SERVER for children."""
    if not shutil.which("jackd"):
        sys.exit("jackd is not installed (apt-get install jackd2)")
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1", JACK_NO_START_SERVER="1")
    for rt in ([True, False] if realtime else [False]):
        name = f"bench_{uuid.uuid4().hex[:8]}"
        mode = ["-R", "-P", "70"] if rt else ["--no-realtime"]
        proc = subprocess.Popen(
            ["jackd", *mode, "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        ok = subprocess.run(["jack_wait", "-w", "-t", "10"], env=dict(env, JACK_DEFAULT_SERVER=name),
                            capture_output=True).returncode == 0
        time.sleep(0.2)
        if ok and proc.poll() is None:
            os.environ.update(JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1", JACK_NO_AUDIO_RESERVATION="1")
            return proc, name, rt
        proc.kill()
        proc.wait()
    sys.exit("jackd did not come up")


def stop_jackd(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
