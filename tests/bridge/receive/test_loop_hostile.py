"""Issue 16, hostile TCP peers against the real bridge: an END-byte flood does not starve UDP, idle
connections time out and the idlest makes room for a new sender."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from trainsound.bridge.wire.osc import decode_message, encode_message
from trainsound.bridge.wire.slip import SlipDecoder
from trainsound.bridge.wire.slip import encode as slip

PING = encode_message("/trainsound/ping")


def _tcp_ping(port: int, timeout: float) -> float | None:
    """Seconds until a pong over a new TCP connection; None if none came."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.sendall(slip(PING))
            dec = SlipDecoder(1024)
            while time.monotonic() - t0 < timeout:
                data = c.recv(1024)
                if not data:
                    return None
                if any(decode_message(p)[0] == "/trainsound/pong" for p in dec.feed(data)):
                    return time.monotonic() - t0
    except OSError:
        return None
    return None


def test_end_byte_flood_does_not_starve_udp(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    stop = threading.Event()
    junk = b"\xc0" * 65536
    sent_junk = [0] * 8

    def flood(i: int) -> None:
        with socket.create_connection(("127.0.0.1", b.port)) as c:
            c.settimeout(0.5)
            while not stop.is_set():
                try:
                    c.sendall(junk)
                    sent_junk[i] += len(junk)
                except (TimeoutError, OSError):
                    pass

    threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1.0)
    msg = encode_message("/nn/flood/loss", [0.5])
    sent, pongs, t_end = 0, [], time.monotonic() + 2.0
    while time.monotonic() < t_end:
        for _ in range(20):
            u.sendto(msg, ("127.0.0.1", b.port))
        sent += 20
        t0 = time.monotonic()
        u.sendto(PING, ("127.0.0.1", b.port))
        try:
            while decode_message(u.recv(256))[0] != "/trainsound/pong":
                pass
            pongs.append(time.monotonic() - t0)
        except TimeoutError:
            pongs.append(float("inf"))
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(5)
    u.close()
    st = b.status()
    # Each ping waited for its pong while the flood went on: none went unanswered (before: 0 of 4 in 3 s).
    assert sum(sent_junk) > 10 * len(junk)
    assert max(pongs) < 1.0, pongs
    assert st["accepted"] == sent and st.get("kernel_drops", 0) == 0


def test_idle_connections_are_closed_and_the_idlest_makes_room(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text("[bridge]\ntcp_max_connections = 4\ntcp_idle = 3\n")
    b = bridge_proc(["--no-midi", "--config", str(cfg)])
    idle = [socket.create_connection(("127.0.0.1", b.port)) for _ in range(4)]
    time.sleep(0.2)
    # At the cap, all silent for less than 2 s: a newcomer is refused (an active sender is never cut)...
    assert _tcp_ping(b.port, 0.5) is None
    time.sleep(2.0)
    # ...then the idlest (silent ≥ 2 s) makes room: the new sender is served at once (before: never).
    took = _tcp_ping(b.port, 2.0)
    assert took is not None and took < 0.5
    st = b.status()
    assert st["tcp"]["evicted"] >= 1 and st["noted"]["tcp_evicted"] >= 1
    # After tcp_idle (3 s) of silence every idle connection is closed by the bridge.
    time.sleep(3.5)
    for s in idle:
        s.settimeout(1.0)
        assert s.recv(16) == b""  # closed by the bridge
        s.close()
    tcp = b.status()["tcp"]  # (each status query over TCP needed a slot too: more evictions)
    assert tcp["idle_closed"] >= 1 and tcp["evicted"] + tcp["idle_closed"] >= 4
