"""``trainsound send`` and ``status`` as a shell user runs them: real CLI subprocesses against a real bridge."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support import free_udp_port

from trainsound.bridge.wire.session import iter_messages

TS = [sys.executable, "-m", "trainsound.bridge"]


def ts(*words: str, addr: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRAINSOUND_ADDR"}
    if addr is not None:
        env["TRAINSOUND_ADDR"] = addr
    return subprocess.run([*TS, *words], capture_output=True, text=True, timeout=30, env=env)


def test_send_and_status_choose_the_bridge_like_the_clients(bridge_proc: Any, tmp_path: Path) -> None:
    """Issue 16 #20: ``--to`` wins over ``$TRAINSOUND_ADDR``, which wins over 127.0.0.1:9150, for every
    command (before: send and status ignored the variable and went to 9150)."""
    rec = tmp_path / "s.tsr"
    b = bridge_proc(["--no-midi", "--record", str(rec)])
    here, nowhere = f"127.0.0.1:{b.port}", f"127.0.0.1:{free_udp_port()}"
    assert ts("send", "/nn/env/loss", "0.5", addr=here).returncode == 0
    assert ts("send", "/nn/tcp/loss", "0.25", addr=f"tcp://{here}").returncode == 0  # the scheme is honoured
    assert ts("send", "--to", here, "/nn/to/loss", "0.75", addr=nowhere).returncode == 0
    r = ts("status", "--json", addr=here)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["runs"]) >= {"env", "tcp", "to"}
    assert ts("status", "--json", "--to", here, addr=nowhere).returncode == 0
    r = ts("status", "--timeout", "0.5", addr=nowhere)
    assert r.returncode == 1
    assert r.stderr.strip() == f"trainsound: error: no answer from a bridge at {nowhere} within 0.5 s (is it running?)"
    r = ts("status", addr="nonsense")
    assert r.returncode == 1
    assert r.stderr.strip() == "trainsound: error: TRAINSOUND_ADDR must be host:port, got 'nonsense'"
    time.sleep(0.2)
    b.stop()
    got = sorted((a, v) for _, a, v in iter_messages(rec))
    assert got == [("/nn/env/loss", (0.5,)), ("/nn/tcp/loss", (0.25,)), ("/nn/to/loss", (0.75,))]


def test_send_types_words_as_a_shell_user_expects(bridge_proc: Any, tmp_path: Path) -> None:
    """Issue 16 #20: ``-inf`` is a value, not an option; an event named ``nan`` stays a string; step values
    are integers, other /nn values floats (before: ``-inf`` was a usage error, ``nan`` a float)."""
    rec = tmp_path / "s.tsr"
    b = bridge_proc(["--no-midi", "--record", str(rec)])
    for words in (["/nn/r/loss", "-inf"], ["/nn/r/grad_norm/fc1", "-1e-3"], ["/nn/r/event", "nan"],
                  ["/nn/r/step", "3", "-1"], ["/nn/r/metric/acc", "1"], ["/nn/r/metric/acc", "-.5"]):
        r = ts("send", *words, "--to", f"127.0.0.1:{b.port}")
        assert r.returncode == 0, (words, r.stderr)
    r = ts("send", "/nn/r/loss", "low", "--to", f"127.0.0.1:{b.port}")
    assert r.returncode == 1
    assert r.stderr.strip() == "trainsound: error: /nn/r/loss takes numbers, got 'low' (force a type with s:)"
    time.sleep(0.2)
    st = b.status()
    assert st["dropped"] == {} and st["accepted"] == 6
    b.stop()
    got = [(a, v) for _, a, v in iter_messages(rec)]
    assert got[0][0] == "/nn/r/loss" and got[0][1][0] == -math.inf
    assert got[1:] == [("/nn/r/grad_norm/fc1", (-0.0010000000474974513,)), ("/nn/r/event", ("nan",)),
                       ("/nn/r/step", (3, -1)), ("/nn/r/metric/acc", (1.0,)), ("/nn/r/metric/acc", (-0.5,))]


def test_send_refuses_what_the_bridge_would_drop(bridge_proc: Any, tmp_path: Path) -> None:
    """Issue 26 #7: no arguments, three arguments, a misspelt kind: exit 2 with the protocol's reason, nothing
    sent (before: exit 0, and the bridge counted and dropped them)."""
    rec = tmp_path / "s.tsr"
    b = bridge_proc(["--no-midi", "--record", str(rec)])
    to = f"127.0.0.1:{b.port}"
    cases = {("/nn/r/loss",): "/nn/r/loss takes 1 argument(s), got 0",
             ("/nn/r/loss", "1", "2", "3"): "/nn/r/loss takes 1 argument(s), got 3",
             ("/nn/r/los", "0.5"): "/nn/r/los: unknown kind 'los'",
             ("/nn/r/event", "finish"): "/nn/r/event: unknown event 'finish'"}
    for words, reason in cases.items():
        r = ts("send", *words, "--to", to)
        assert r.returncode == 2, (words, r.stderr)
        assert r.stderr.strip() == f"trainsound: error: {reason} (not sent: the bridge would drop it)"
    assert ts("send", "/nn/r/loss", "0.5", "--to", to).returncode == 0
    time.sleep(0.2)
    st = b.status()
    assert st["accepted"] == 1 and st["dropped_total"] == 0, st
    b.stop()
    assert [a for _, a, _ in iter_messages(rec)] == ["/nn/r/loss"]
