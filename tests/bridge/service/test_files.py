"""The bridge's files through the real process: a restart never overwrites (issue 16, item 3)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mido

from trainsound.bridge.wire.session import iter_messages


def test_a_restart_keeps_every_file_of_the_previous_session(bridge_proc: Any, tmp_path: Path) -> None:
    rec, mid, wav = tmp_path / "s.tsr", tmp_path / "s.mid", tmp_path / "s.wav"
    args = ["--no-midi", "--record", str(rec), "--midi-file", str(mid), "--wav", str(wav)]
    b = bridge_proc(args)
    for i in range(5):
        b.send("/nn/r/grad_norm/l", 0.01 * (i + 1))
    assert b.stop()[0] == 0
    before = {p: p.read_bytes() for p in (rec, mid, wav)}
    assert sum(1 for _ in iter_messages(rec)) == 5

    b = bridge_proc(args)  # what systemd's Restart= does
    b.send("/nn/r/grad_norm/l", 0.5)
    rc, err = b.stop()
    assert rc == 0
    assert {p: p.read_bytes() for p in (rec, mid, wav)} == before  # not a byte lost
    new = {p: next(iter(tmp_path.glob(f"s-*{p.suffix}"))) for p in (rec, mid, wav)}
    for old, fresh in new.items():
        assert re.fullmatch(r"s-\d{8}-\d{6}" + re.escape(old.suffix), fresh.name)
        assert f"{old} exists ({len(before[old])} bytes); kept, writing {fresh} instead" in err
    assert sum(1 for _ in iter_messages(new[rec])) == 1
    assert sum(1 for m in mido.MidiFile(str(new[mid])).tracks[1] if m.type == "note_on") == 1
