"""Helpers for the service tests: process memory, paced sending, config files."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from pathlib import Path


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def send_paced(sock: socket.socket, to: tuple[str, int], packets: Iterable[bytes], rate: float) -> int:
    """Send at about ``rate`` datagrams/s (in bursts of 50, so the pacing costs little); returns the count."""
    n = 0
    t0 = time.perf_counter()
    for data in packets:
        sock.sendto(data, to)
        n += 1
        if n % 50 == 0:
            ahead = n / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
    return n


def write_config(path: Path, **bridge: object) -> Path:
    """A config file with some ``[bridge]`` keys (TOML literals from Python values)."""
    lines = ["[bridge]"]
    for k, v in bridge.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        elif isinstance(v, (list, tuple)):
            lines.append(f"{k} = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in v)}]")
        else:
            lines.append(f"{k} = {v}")
    path.write_text("\n".join(lines) + "\n")
    return path
