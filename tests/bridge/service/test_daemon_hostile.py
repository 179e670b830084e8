"""Issue 16, through the real bridge: bad match patterns, reloads of anything, check-config = start rules,
status is no UDP amplifier and fits one datagram, routine status polls log nothing at INFO."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from trainsound.bridge.wire.osc import decode_message, encode_bundle, encode_message

TRAINSOUND = [sys.executable, "-m", "trainsound.bridge"]
BAD_MATCHES = {
    "/nn/{run}/grad_norm/{run}": "capture {run} appears twice",
    "/nn/{1run}/loss": "capture {1run} in '/nn/{1run}/loss' must be a name like {layer}",
    "/nn/{run/grad_norm/{layer}": "unbalanced '{' or '}'",
    "/nn/[a-z/loss": "'[' in '/nn/[a-z/loss' is not supported",
}


def _rule(match: str) -> str:
    return f'[[mappings]]\nmatch = "{match}"\ntarget = "cc"\n'


@pytest.mark.parametrize("match", BAD_MATCHES)
def test_bad_match_is_one_line_at_check_config_and_at_start(tmp_path: Path, match: str) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(_rule(match))
    for cmd in (["check-config", str(cfg)], ["bridge", "--no-midi", "--config", str(cfg), "--listen", "127.0.0.1:9"]):
        r = subprocess.run([*TRAINSOUND, *cmd], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr
        assert f"{cfg}: mappings[0].match: " in lines[0] and BAD_MATCHES[match] in lines[0]


def test_reload_survives_whatever_the_config_path_holds(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(_rule("/nn/{run}/loss"))
    b = bridge_proc(["--no-midi", "--config", str(cfg)])
    hostile: list[tuple[str, Any]] = [
        *[(m, lambda m=m: cfg.write_text(_rule(m))) for m in BAD_MATCHES],
        ("garbage bytes", lambda: cfg.write_bytes(bytes(range(256)) * 4)),
        ("a deep table", lambda: cfg.write_text("a = " + "[" * 5000 + "]" * 5000)),
        ("empty mappings entry", lambda: cfg.write_text("[[mappings]]\n")),
        ("a directory", lambda: (cfg.unlink(), cfg.mkdir())),
        ("missing", lambda: cfg.rmdir()),
    ]
    for _what, make in hostile:
        make()
        b.proc.send_signal(signal.SIGHUP)
        time.sleep(0.25)
        assert b.proc.poll() is None
    b.send("/nn/r/loss", 0.5)
    st = b.status()
    assert (st["reloads"], st["reload_errors"]) == (0, len(hostile)) and st["accepted"] == 1
    rc, err = b.stop()
    assert rc == 0
    refused = [ln for ln in err.splitlines() if "reload refused" in ln]
    assert len(refused) == len(hostile) and "Traceback" not in err


def test_check_config_applies_the_start_rules(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text('[bridge]\nlisten = "0.0.0.0:9150"\n')
    r = subprocess.run([*TRAINSOUND, "check-config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"{cfg}: bridge.listen: refusing to listen on 0.0.0.0" in r.stderr
    r = subprocess.run([*TRAINSOUND, "bridge", "--no-midi", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 1 and "refusing to listen on 0.0.0.0" in r.stderr
    cfg.write_text('[bridge]\nlisten = "0.0.0.0:9150"\nallow = ["10.0.0.0/8"]\n')
    assert subprocess.run([*TRAINSOUND, "check-config", str(cfg)], capture_output=True).returncode == 0


def _collect(sock: socket.socket, seconds: float) -> list[bytes]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        with contextlib.suppress(TimeoutError, OSError):
            out.append(sock.recv(1 << 17))
    return out


def test_udp_replies_are_never_larger_than_their_request(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    # A big status: 64 runs with long non-ASCII names (each 4-byte emoji is 12 characters of JSON).
    for r in range(64):
        for layer in range(4):
            b.send(f"/nn/{'😀' * 30}{r:02d}/grad_norm/{'é' * 60}{layer}", 0.5)
        time.sleep(0.005)
    time.sleep(0.3)
    full = b.status()  # TCP: the whole status
    assert len(full["runs"]) == 64 and sum(len(v) for v in full["voices"].values()) == 256
    u = b.sock
    for request in (
        encode_message("/trainsound/status"),  # 24 bytes: answered with /trainsound/tcp
        b"/trainsound/status\x00\x00",  # 20 bytes, no type tags (OSC 1.0)
        encode_message("/trainsound/status", [b"\0" * 400]),  # room for a summary
        encode_message("/trainsound/ping"),  # 24 bytes
        b"/trainsound/ping\x00\x00\x00\x00",  # 20 bytes
        encode_message("/trainsound/ping", [b"pad"]),  # 32 bytes: room for the version
    ):
        u.sendto(request, ("127.0.0.1", b.port))
        replies = _collect(u, 0.3)
        assert len(replies) == 1 and len(replies[0]) <= len(request), (request, replies)
        address, args = decode_message(replies[0])
        if request.startswith(b"/trainsound/ping"):
            assert address == "/trainsound/pong" and args == ((1,) if len(request) >= 28 else ())
        elif len(request) < 100:
            assert (address, args) == ("/trainsound/tcp", ())
        else:
            summary = json.loads(str(args[0]))
            assert summary["truncated"] and summary["tcp"] and summary["datagrams"] >= 256
    # The padded request the CLI's UDP fallback sends gets the whole status, still within one datagram.
    st = b.status_udp()
    assert st["runs"] == full["runs"] and st["truncated"] and st["voices"] == {"run,layer": 256}
    # Status requests inside a bundle are not answered at all (counted).
    u.sendto(encode_bundle([encode_message("/trainsound/status", [b"\0" * 2000])] * 20), ("127.0.0.1", b.port))
    assert _collect(u, 0.3) == []
    assert b.status()["dropped"]["control_in_bundle"] == 20


def test_udp_replies_share_one_rate_limit(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    t0 = time.monotonic()
    for i in range(1000):  # from four "victims": the limit is global, not per address
        senders[i % 4].sendto(encode_message("/trainsound/ping"), ("127.0.0.1", b.port))
    sent_for = time.monotonic() - t0
    got = 0
    for s in senders:
        got += len(_collect(s, 0.3))
        s.close()
    # A burst of 100, then 100 a second.
    assert 90 <= got <= 100 + 100 * (sent_for + 1.2) + 5
    assert b.status()["noted"]["reply_rate_limited"] == 1000 - got
    _rc, err = b.stop()
    assert err.count("UDP replies/s") == 1  # one warning line for 900 unanswered pings


def test_status_polls_log_nothing_at_info(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    for _ in range(5):
        r = subprocess.run([*TRAINSOUND, "status", "--to", f"127.0.0.1:{b.port}"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    _rc, err = b.stop()
    assert "tcp://" not in err, err
