"""``trainsound ports`` on a machine with a JACK server and a running bridge: both directions, no C chatter."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import MidiProbe, wait_until

pytestmark = pytest.mark.jack


def test_ports_lists_the_bridges_port_and_the_synths(bridge_proc: Any, midi_probe: MidiProbe, tmp_path: Path) -> None:
    """Issue 26 #7: the bridge's ``NAME:out`` is a port sending MIDI, the probe's ``in`` one to send to (before:
    "Jack: 0 output port(s)" while the bridge's port existed); ALSA's absence is one line, not stderr noise."""
    name = f"ts{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[midi]\napi = "jack"\nclient_name = "{name}"\n')
    b = bridge_proc(["--config", str(cfg)])
    b.wait_output_ok("midi")

    def ports() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "trainsound.bridge", "ports"], capture_output=True, text=True,
                              timeout=30)

    r = wait_until(lambda: (p := ports()).returncode == 0 and f"{name}:out" in p.stdout and p, 10.0,
                   "the bridge's port listed")
    jack = [line for line in r.stdout.splitlines() if line.startswith("JACK") or line.startswith("Jack")]
    assert jack and "port(s) to send to" in jack[0], r.stdout
    assert any(line.strip().startswith("from") and line.endswith(f"{name}:out") for line in r.stdout.splitlines())
    assert any(line.strip().startswith("to") and line.endswith(midi_probe.port) for line in r.stdout.splitlines())
    assert "ALSA: unavailable" in r.stdout  # no /dev/snd here: said once, on stdout
    assert r.stderr == "", r.stderr
    b.stop()
