"""What the command says when its outputs cannot do what was asked (issue 16, item 23), as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from trainsound.bridge.wire.session import SessionWriter, encode_message

TRAINSOUND = [sys.executable, "-m", "trainsound.bridge"]


def test_replay_to_midi_with_no_midi_system_fails_in_one_line(tmp_path: Path) -> None:
    session = tmp_path / "s.tsr"
    with open(session, "wb") as fh:
        w = SessionWriter(fh, 100.0)
        for i in range(3):
            w.write(100.0 + i, encode_message("/nn/r/grad_norm/l", [0.1 * (i + 1)]))
        w.flush()
    env = dict(os.environ, JACK_DEFAULT_SERVER=f"none_{uuid.uuid4().hex[:8]}")
    r = subprocess.run([*TRAINSOUND, "replay", str(session), "--midi", "--midi-api", "jack"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if "trainsound: error" in ln]
    assert lines == ["trainsound: error: replay --midi: nothing to play to: waiting for JACK server (none running)"]
    assert "replayed" not in r.stderr  # no success reported


def test_a_bridge_with_no_outputs_says_what_happens(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    rc, err = b.stop()
    assert rc == 0
    assert "no outputs: messages are received, counted and answered in status, but nothing plays" in err


def test_a_pyo_section_without_the_flag_says_what_happens(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[pyo]\npatch = "loss_sine"\n')
    b = bridge_proc(["--no-midi", "--config", str(cfg), "--midi-file", str(tmp_path / "s.mid")])
    time.sleep(0.1)
    rc, err = b.stop()
    assert rc == 0
    assert (f"{cfg}: [pyo] is configured (patch 'loss_sine') but no pyo output was asked for: "
            "add --pyo-patch loss_sine to play it") in err
