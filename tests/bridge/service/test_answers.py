"""The daemon's answers through the real bridge: learn is taken over TCP only (issue 28, item 10), the
snapshot is built off the receive loop (issue 28, item 1)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support import wait_until

from trainsound.bridge.service.control import ControlClient
from trainsound.bridge.wire.osc import decode_message, encode_message
from trainsound.bridge.wire.slip import SlipDecoder
from trainsound.bridge.wire.slip import encode as slip


def _udp_ask(port: int, address: str, args: list[Any]) -> tuple[str, list[Any]]:
    """One padded UDP request (the reply fits) → the reply's address and arguments."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(2.0)
        u.sendto(encode_message(address, [*args, b"\0" * 4000]), ("127.0.0.1", port))
        address, reply = decode_message(u.recv(1 << 16))
        return address, list(reply)


def test_learn_over_udp_is_refused_and_changes_nothing(bridge_proc: Any, tmp_path: Path) -> None:
    """Before: one spoofed UDP datagram soloed a target for 600 s (muting all other MIDI), even with its reply
    withheld. Now learn over UDP is answered ``ok: false`` and counted; nothing is soloed. Over TCP it works."""
    b = bridge_proc(["--no-midi", "--midi-file", str(tmp_path / "s.mid")])
    b.send("/nn/run1/loss", 0.5)
    targets = wait_until(lambda: json.loads(_udp_ask(b.port, "/trainsound/targets", [])[1][0]), 5, "targets")
    name = next(t["name"] for t in targets if t["name"].startswith("loss"))
    address, args = _udp_ask(b.port, "/trainsound/learn", [name, 600.0])
    reply = json.loads(args[0])
    assert address == "/trainsound/learn.reply" and reply["ok"] is False
    assert reply["error"].startswith("learn is taken over TCP only")
    st = b.status()
    assert "learn" not in st and st["dropped"]["learn_needs_tcp"] == 1
    with ControlClient("127.0.0.1", b.port) as c:
        assert c.tcp("/trainsound/learn", (name, 2.0))["ok"] is True
    assert b.status()["learn"]["name"] == name


def test_the_learn_command_without_tcp_says_why_in_one_line(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text("[bridge]\ntcp = false\n")
    b = bridge_proc(["--no-midi", "--config", str(cfg)])
    b.send("/nn/run1/loss", 0.5)
    time.sleep(0.3)
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "learn", "loss_brightness/run1", "--to",
                        f"127.0.0.1:{b.port}"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "learn is taken over TCP only" in r.stderr and "[bridge].tcp = false" in r.stderr
    assert "learn" not in b.status()


def test_snapshots_are_built_off_the_loop_and_shared(bridge_proc: Any) -> None:
    """Six connections asking for a snapshot at once with 64 runs loaded (~165 KB of JSON, ~40 ms to build):
    each gets it whole, and a UDP ping sent right after them comes back within 50 ms (before: behind all six
    builds, ~240 ms)."""
    b = bridge_proc(["--no-midi"])
    for r in range(64):
        for layer in range(20):
            b.send(f"/nn/run{r:02d}/grad_norm/layer{layer:02d}", 0.5)
        time.sleep(0.005)
    wait_until(lambda: len(b.status()["runs"]) == 64, 10, "64 runs")
    conns = [socket.create_connection(("127.0.0.1", b.port)) for _ in range(6)]
    time.sleep(0.2)
    for c in conns:
        c.sendall(slip(encode_message("/trainsound/snapshot")))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(1.0)
        t0 = time.monotonic()
        u.sendto(encode_message("/trainsound/ping"), ("127.0.0.1", b.port))
        assert u.recv(64).startswith(b"/trainsound/pong")
        rtt = time.monotonic() - t0
    for c in conns:
        c.settimeout(5.0)
        dec, got = SlipDecoder(1 << 22), []
        while not got:
            got = dec.feed(c.recv(1 << 20))
        address, args = decode_message(got[0])
        assert address == "/trainsound/snapshot.reply" and len(json.loads(args[0])["runs"]) == 64
        c.close()
    assert rtt < 0.05, f"{rtt * 1000:.0f} ms"
