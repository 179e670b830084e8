"""MPE mode through the real bridge and a JACK MIDI probe: zone declared, a member channel per voice, glides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr
from support import MidiProbe

from trainsound.bridge.outputs.mpe import MpeZone, bend_code

pytestmark = pytest.mark.jack

RPN6 = [[0xB0, 101, 0], [0xB0, 100, 6], [0xB0, 6, 14]]


def mpe_config(tmp_path: Path) -> str:
    p = tmp_path / "mpe.toml"
    p.write_text('[midi]\napi = "jack"\nmode = "mpe"\n')
    return str(p)


def test_zone_voices_and_glides(bridge_proc: Any, midi_probe: MidiProbe, tmp_path: Path) -> None:
    b = bridge_proc(["--config", mpe_config(tmp_path), "--midi-port", midi_probe.port])
    b.wait_output_ok("midi")
    msgs = midi_probe.wait_for(6 + 6 * 14, timeout=3)
    assert msgs[:3] == RPN6, "the MPE Configuration Message (RPN 6, 14 members) comes first on the master"
    # A smooth ramp of one layer's norm over two decades, and a second layer held steady.
    norms = np.geomspace(1e-2, 1.0, 60)
    for i, x in enumerate(norms):
        b.send("/nn/r/grad_norm/fc1", float(x))
        b.send("/nn/r/grad_norm/fc2", 0.5 + 0.001 * (i % 2))
        time.sleep(0.06)  # the default rule's 20/s rate limit lets every value through
    time.sleep(0.3)
    played = midi_probe.wait_for(10_000, timeout=0.5)[len(msgs):]
    ons = [m for m in played if m[0] & 0xF0 == 0x90 and m[2] > 0]
    chans = sorted({m[0] & 0x0F for m in ons})
    assert len(ons) == 2 and len(chans) == 2 and all(1 <= c <= 14 for c in chans), ons
    ramp_ch = ons[0][0] & 0x0F
    bends = [m[2] << 7 | m[1] for m in played if m[0] == 0xE0 | ramp_ch]
    assert len(bends) >= 40
    rho = spearmanr(np.arange(len(bends)), bends).statistic
    assert rho >= 0.99, f"pitch bends do not follow the ramp (rho={rho:.3f})"
    assert b.status()["outputs"]["midi"]["mpe_retriggers"] == 0
    b.stop()
    tail = midi_probe.wait_for(10_000, timeout=1.0)
    sounding = set()
    for m in tail:
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            sounding.add((m[0] & 0x0F, m[1]))
        elif m[0] & 0xF0 == 0x80:
            sounding.discard((m[0] & 0x0F, m[1]))
    assert not sounding, f"stuck notes after shutdown: {sounding}"


def test_more_voices_than_members_steal_the_quietest() -> None:
    z = MpeZone(members=2, bend_range=48)
    z.update(0.0, "a", 60.0, 100)
    z.update(1.0, "b", 62.0, 100)
    out = z.update(2.0, "c", 64.0, 100)
    assert out[0] == bytes([0x81, 60, 0]) and z.stolen == 1  # "a" was silent longest: its channel 2 is reused
    assert z.channel_of("c") == 2 and z.channel_of("a") is None


def test_bend_range_bounds() -> None:
    assert bend_code(0.0, 48) == 8192
    assert bend_code(48.0, 48) == 16383 and bend_code(-48.0, 48) == 0
    assert bend_code(100.0, 48) == 16383


def test_a_late_listener_gets_the_zone_and_the_sounding_voices_keep_theirs(
    bridge_proc: Any, midi_probe: MidiProbe, tmp_path: Path
) -> None:
    """Issue 24 #4: a DAW that connects to the virtual port after start receives the MCM (RPN 6) and RPN 0s,
    then the sounding voice's current bend; a listener already there hears no note cut, and no zone on a timer."""
    import uuid

    import jack

    name = f"mpe{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "late.toml"
    cfg.write_text(f'[midi]\napi = "jack"\nmode = "mpe"\nclient_name = "{name}"\n')
    b = bridge_proc(["--config", str(cfg)])
    b.wait_output_ok("midi")
    early = midi_probe
    late = MidiProbe(f"late_{uuid.uuid4().hex[:6]}")
    wire = jack.Client(f"wire{uuid.uuid4().hex[:4]}", no_start_server=True)
    try:
        wire.connect(f"{name}:out", early.port)  # after start too: it gets the zone when it connects
        assert early.wait_for(3, timeout=3)[:3] == RPN6
        time.sleep(0.3)
        for i in range(10):  # one voice sounding, gliding
            b.send("/nn/r/grad_norm/fc1", 0.1 * (1 + i / 20))
            time.sleep(0.06)
        before = len(early.wait_for(0, timeout=0))
        assert any(m[0] & 0xF0 == 0x90 for m in early.wait_for(0, timeout=0)), "the early listener heard the note"
        assert late.wait_for(1, timeout=0.5) == [], "nothing reaches a port before it is connected"
        wire.connect(f"{name}:out", late.port)
        got = late.wait_for(6 * 15 + 1, timeout=3)
        assert got[:3] == RPN6, f"the late listener's first messages: {got[:6]}"
        rpn0 = [got[6 * k: 6 * k + 3] for k in range(1, 15)]  # then each member's bend range (RPN 0): 48
        assert rpn0 == [[[0xB0 + k, 101, 0], [0xB0 + k, 100, 0], [0xB0 + k, 6, 48]] for k in range(1, 15)]
        bends = [m for m in got[6 * 15:] if m[0] & 0xF0 == 0xE0]
        assert bends and bends[0][0] == 0xE1, "the sounding voice's bend follows the zone"
        st = b.status()["outputs"]["midi"]
        assert st["mpe_declared"] == 2  # once per listener
        # The early listener got the same declaration once, and no note-off came with it: nothing was cut.
        after = early.wait_for(0, timeout=0)[before:]
        assert sum(1 for i in range(len(after) - 2) if after[i:i + 3] == RPN6) == 1
        assert not [m for m in after if m[0] & 0xF0 == 0x80], "connecting a listener cut a sounding note"
        time.sleep(1.2)  # no declaration on a timer
        assert b.status()["outputs"]["midi"]["mpe_declared"] == 2
    finally:
        wire.close()
        late.close()
    rc, _ = b.stop()
    assert rc == 0
