"""``/trainsound/forward`` against the real bridge process: answered, shown in ``status``, sent back; a
state change, so over UDP never acted on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import wait_until

from trainsound.bridge.service.control import ask
from trainsound.bridge.wire.osc import decode_message, encode_message

TS = [sys.executable, "-m", "trainsound.bridge"]


def forward(port: int, *args: Any) -> Any:
    return ask("127.0.0.1", port, "/trainsound/forward", tuple(args))


def feed(b: Any, steps: int) -> None:
    for i in range(steps):
        b.send("/nn/r1/step", i)
        b.send("/nn/r1/loss", 2.0 / (1 + i))
        for k in range(6):
            b.send(f"/nn/r1/grad_norm/l{k}", 10.0 ** (k - 3))


def test_forward_is_answered_shown_in_status_and_cleared(bridge_proc: Any, tmp_path: Path) -> None:
    b = bridge_proc(["--no-midi", "--wav", str(tmp_path / "out.wav")])
    b.wait_output_ok("sine")
    feed(b, 3)
    wait_until(lambda: "l5" in b.status().get("groups", {}).get("r1", {}).get("grad_norm_notes", {}),
               what="r1's voice groups")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:  # over UDP: refused, counted, nothing moves
        u.settimeout(2.0)
        u.sendto(encode_message("/trainsound/forward", ["r1", "l3", b"\0" * 4000]), ("127.0.0.1", b.port))
        address, args = decode_message(u.recv(1 << 16))
    assert address == "/trainsound/forward.reply" and json.loads(args[0])["ok"] is False
    assert "forward is taken over TCP only" in json.loads(args[0])["error"]
    st = b.status()
    assert st["dropped"]["forward_needs_tcp"] == 1 and st["outputs"]["sine"]["forward"] == []
    r = forward(b.port, "r1", "l3")
    assert r == {"ok": True, "forward": [{"run": "r1", "group": "l3", "left": None}]}
    r = forward(b.port, "r1", "l4", 30.0)
    assert r["ok"] and [f["group"] for f in r["forward"]] == ["l3", "l4"]
    st = b.status()["outputs"]["sine"]["forward"]
    assert st[0] == {"run": "r1", "group": "l3", "left": None}
    assert st[1]["group"] == "l4" and 25.0 < st[1]["left"] <= 30.0
    text = subprocess.run([*TS, "status", "--to", f"127.0.0.1:{b.port}"], capture_output=True, text=True,
                          timeout=30).stdout
    assert "  forward: r1/l3, r1/l4 (" in text, text
    # A third sends the oldest back.
    assert [f["group"] for f in forward(b.port, "r1", "l0")["forward"]] == ["l4", "l0"]
    # Bad requests: one clear line, the valid names; nothing changes.
    bad = forward(b.port, "r1", "nope")
    assert bad["ok"] is False and "no voice group 'nope' in run 'r1'" in bad["error"] and "l3" in bad["groups"]
    assert "seconds must be" in forward(b.port, "r1", "l1", -2.0)["error"]
    assert "needs a run" in forward(b.port, "r1")["error"]
    assert forward(b.port, "r1", "l4", 0.0)["forward"] == [{"run": "r1", "group": "l0", "left": None}]
    assert forward(b.port) == {"ok": True, "forward": []}
    assert b.status()["outputs"]["sine"]["forward"] == []
    # MIDI learn of a group's notes brings that group forward for the learn, then back.
    learned = ask("127.0.0.1", b.port, "/trainsound/learn", ("grad_norm_notes/r1/l2", 1.0))
    assert learned["ok"], learned
    st = b.status()["outputs"]["sine"]["forward"]
    assert [f["group"] for f in st] == ["l2"] and 0.0 <= st[0]["left"] <= 1.0
    wait_until(lambda: b.status()["outputs"]["sine"]["forward"] == [], 5.0, "the learn's end")
    feed(b, 2)
    code, log = b.stop()
    assert code == 0, log


def test_forward_without_a_foreground_says_so(bridge_proc: Any, tmp_path: Path) -> None:
    b = bridge_proc(["--no-midi", "--wav", str(tmp_path / "out.wav"), "--preset", "everything"])
    b.wait_output_ok("sine")
    feed(b, 3)
    wait_until(lambda: "l5" in b.status().get("groups", {}).get("r1", {}).get("grad_norm_notes", {}),
               what="r1's voice groups")
    r = forward(b.port, "r1", "l3")
    assert r["ok"] is False and "no output has a foreground" in r["error"] and "everything" in r["error"]
    assert "forward" not in b.status()["outputs"]["sine"]
    assert forward(b.port) == {"ok": True, "forward": []}
    code, log = b.stop()
    assert code == 0, log
