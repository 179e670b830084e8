"""The web port against hostile peers, through the real bridge process (loopback only)."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BridgeProc
from webrig import free_tcp_port, web_bridge

from trainsound.bridge.web.gate import HEADER_TIMEOUT, MAX_CONNECTIONS
from trainsound.bridge.web.server import SEND_BUFFER

pytestmark = pytest.mark.slow


@pytest.fixture
def page() -> Iterator[tuple[BridgeProc, int]]:
    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}")
    try:
        yield b, web
    finally:
        b.stop()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def ws_open(port: int) -> socket.socket:
    """A WebSocket handshake by hand; the caller then never reads (a small receive buffer, so it fills)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
              f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)  # byte by byte: nothing after the handshake is read
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def ping_frame() -> bytes:
    """A masked, empty ping: what keeps aiohttp's heartbeat satisfied without reading anything."""
    return struct.pack("!BB", 0x89, 0x80) + os.urandom(4)


def test_pages_that_never_read_hold_bounded_memory(tmp_path: Path) -> None:
    cfg = tmp_path / "rows.toml"
    cfg.write_text('[groups]\nmode = "none"\n')  # a row per layer: deltas of ~100 KB
    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}", extra=("--config", str(cfg)))
    lazy = [ws_open(web) for _ in range(20)]
    stop = threading.Event()

    def keepalive() -> None:
        while not stop.wait(2.0):
            for s in lazy:
                with contextlib.suppress(OSError):
                    s.sendall(ping_frame())

    k = threading.Thread(target=keepalive, daemon=True)
    k.start()
    try:
        base = rss_mb(b.proc.pid)
        t_end = time.monotonic() + 15.0
        i = 0
        while time.monotonic() < t_end:  # 300 streams changing every 20 ms: deltas of ~100 KB
            for layer in range(300):
                b.send(f"/nn/big/grad_norm/layer{layer:03d}.weight", 0.1 + (i % 97) / 100 + layer / 1000)
            i += 1
            time.sleep(0.02)
        grown = rss_mb(b.proc.pid) - base
        health = b.status()["web"]
    finally:
        stop.set()
        k.join(5)
        for s in lazy:
            s.close()
        rc, _ = b.stop()
    print(f"RSS grew {grown:.1f} MB; web health {health}")
    # Each page holds at most SEND_BUFFER plus one message; before, 20 such pages grew the bridge 350 MB in 40 s.
    assert grown < 20 * 2 * SEND_BUFFER / 2**20 + 30, grown
    assert health["skipped"] > 0, health  # counted: a page behind is sent nothing, then a fresh hello
    assert rc == 0 and health["closed_slow"] <= 20


def test_idle_and_unfinished_connections_are_capped_and_timed_out(page: tuple[BridgeProc, int]) -> None:
    b, web = page
    idle = []
    for _ in range(3 * MAX_CONNECTIONS):
        s = socket.create_connection(("127.0.0.1", web))
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        idle.append(s)
    try:
        # A real request still gets its page while they hang (the oldest silent one is evicted).
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", web), timeout=5) as c:
            c.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{web}\r\nConnection: close\r\n\r\n".encode())
            assert c.recv(64).startswith(b"HTTP/1.1 200"), "the page"
        assert time.monotonic() - t0 < 2.0
        health = b.status()["web"]
        assert health["connections"] <= MAX_CONNECTIONS and health["refused"]["evicted"] >= 2 * MAX_CONNECTIONS - 1
        # The ones left are cut after the header timeout.
        live = idle[-MAX_CONNECTIONS + 1:]
        time.sleep(HEADER_TIMEOUT + 1.5)
        closed = 0
        for s in live:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed == len(live)
    finally:
        for s in idle:
            s.close()


def test_refusals_are_one_line_each_and_rate_limited(page: tuple[BridgeProc, int]) -> None:
    b, web = page
    for _ in range(300):
        for req in (b"GET / HTTP/1.1\r\n\r\n",  # no Host header (was a 10-line traceback each)
                    b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
                    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", web), timeout=5) as c:
                c.sendall(req)
                assert c.recv(64)[9:12] in (b"400", b"403")
    refused = b.status()["web"]["refused"]
    b.stop()
    lines = [ln for ln in b.stderr.splitlines() if "web: " in ln]
    assert (refused["bad_request"], refused["bad_host"], refused["bad_origin"]) == (300, 300, 300), refused
    assert "Traceback" not in b.stderr
    assert 2 <= len(lines) <= 4, lines  # one line per reason in the first 10 s
