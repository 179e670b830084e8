"""Helpers for the service tests: process memory, paced sending, config files."""

from __future__ import annotations

import contextlib
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


def flood(port: int, seconds: float, rate: float | None, packets: list[bytes]) -> tuple[int, float]:
    """Send ``packets`` round-robin to 127.0.0.1:``port`` for ``seconds`` (at ``rate``/s, or flat out if None).

    Returns (datagrams sent, achieved rate).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    to = ("127.0.0.1", port)
    n = 0
    k = len(packets)
    t0 = time.perf_counter()
    end = t0 + seconds
    try:
        while True:
            for i in range(200):
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    s.sendto(packets[(n + i) % k], to)
            n += 200
            now = time.perf_counter()
            if now >= end:
                break
            if rate is not None:
                ahead = n / rate - (now - t0)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        s.close()
    return n, n / (time.perf_counter() - t0)


def status_latency(port: int, timeout: float = 2.0) -> tuple[float, dict[str, object]]:
    """Round-trip time of one status query as ``trainsound status`` makes it (TCP, not queued behind UDP)."""
    from trainsound.bridge.service.status import query

    t0 = time.perf_counter()
    st = query("127.0.0.1", port, timeout)
    return time.perf_counter() - t0, st
