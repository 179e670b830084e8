"""The bridge's files through the real process: a restart never overwrites, a full disk and its recovery
leave every file valid and the status saying why (issue 16, items 3, 4, 13, 14)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
import soundfile
from support import wait_until

from trainsound.bridge.wire.session import iter_messages

TRAINSOUND = [sys.executable, "-m", "trainsound.bridge"]


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


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A real small filesystem (tmpfs, 2 MiB unless parametrised; the tests run as root) to fill and free."""
    disk = tmp_path / "disk"
    disk.mkdir()
    size = getattr(request, "param", "2m")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (these tests need root): {r.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free; the filler file is returned (unlink it to free the disk)."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_disk_full_and_back_every_file_stays_valid_and_status_says_why(bridge_proc: Any, small_disk: Path) -> None:
    rec, mid, wav = small_disk / "s.tsr", small_disk / "s.mid", small_disk / "s.wav"
    filler = fill(small_disk, leave=160_000)
    b = bridge_proc(["--no-midi", "--record", str(rec), "--midi-file", str(mid), "--wav", str(wav)])
    sent = 0

    def play(seconds: float) -> None:
        nonlocal sent
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            b.send("/nn/r/grad_norm/l", 0.001 * (1 + sent % 50))
            b.send("/nn/r/loss", 1.0 / (1 + sent))
            sent += 2
            time.sleep(0.01)

    play(1.5)  # 384 kB/s of float32 stereo: the WAV fills the disk within half a second
    wait_until(lambda: not b.status()["outputs"]["sine"]["ok"])
    st = b.status()["outputs"]
    assert st["sine"]["why"].startswith(f"disk full: {wav}: No space left on device")
    assert st["sine"]["wav_errors"] > 0 and st["sine"]["wav_dropped_frames"] > 0
    r = subprocess.run([*TRAINSOUND, "status", "--to", f"127.0.0.1:{b.port}"], capture_output=True, text=True)
    assert r.returncode == 3 and f"output sine: NOT OK: disk full: {wav}: No space left on device" in r.stdout

    filler.unlink()  # the disk recovers
    play(1.5)
    wait_until(lambda: all(o["ok"] for o in b.status()["outputs"].values()))
    st = b.status()["outputs"]
    assert "why" not in st["sine"] and "why" not in st["record"] and "why" not in st["midi_file"]
    r = subprocess.run([*TRAINSOUND, "status", "--to", f"127.0.0.1:{b.port}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout  # recovered: healthy again
    rc, err = b.stop()
    assert rc == 0
    assert "dropping audio until it can write again (the file stays valid)" in err
    assert f"WAV {wav}: writing again" in err

    data, sr = soundfile.read(str(wav), dtype="float32", always_2d=True)
    assert data.shape[1] == 2 and len(data) > sr  # audio from both sides of the full disk
    assert np.isfinite(data).all() and np.abs(data).max() <= 1.0  # aligned: no misread samples
    header_frames = (wav.stat().st_size - 58) // 8
    assert len(data) == header_frames  # the header counts exactly the frames in the file
    assert sum(1 for _ in iter_messages(rec)) + st["record"]["shed"] == sent
    assert sum(1 for m in mido.MidiFile(str(mid)).tracks[1] if m.type == "note_on") > 0


def test_a_wav_at_its_size_limit_goes_on_in_numbered_parts(bridge_proc: Any, tmp_path: Path) -> None:
    """The 4 GiB RIFF limit, lowered by ``[sine].max_wav_bytes`` so that the test writes kilobytes."""
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[sine]\nmax_wav_bytes = 100000\n")
    wav = tmp_path / "s.wav"
    b = bridge_proc(["--no-midi", "--config", str(cfg), "--wav", str(wav)])
    for i in range(60):
        b.send("/nn/r/grad_norm/l", 0.001 * (1 + i))
        time.sleep(0.01)
    wait_until(lambda: (tmp_path / "s.2.wav").exists(), 5.0, "the third part of the WAV")
    rc, err = b.stop()
    assert rc == 0
    parts = [wav, *sorted(tmp_path.glob("s.*.wav"), key=lambda p: int(p.suffixes[0][1:]))]
    assert len(parts) >= 3
    assert f"WAV: {wav} reached its size limit; going on in {tmp_path / 's.1.wav'}" in err
    total = 0
    for p in parts:
        assert p.stat().st_size <= 100_000
        data, sr = soundfile.read(str(p), dtype="float32", always_2d=True)
        assert np.isfinite(data).all() and data.shape[1] == 2
        total += len(data)
    assert all(p.stat().st_size > 99_000 for p in parts[:-1])  # full parts, whole frames
    assert total > 0.5 * sr


def note_ons(mid: Path) -> int:
    """Note-ons in the MIDI file as saved now (0 before the first save): it is replaced whole, never torn."""
    if not mid.exists():
        return 0
    return sum(1 for t in mido.MidiFile(str(mid)).tracks for m in t if m.type == "note_on" and m.velocity)


def test_the_midi_file_parses_after_kill_9_mid_burst(bridge_proc: Any, tmp_path: Path) -> None:
    """Saved incrementally (issue 16, item 15), still rewritten atomically: kill -9 leaves the last save."""
    mid = tmp_path / "k.mid"
    b = bridge_proc(["--no-midi", "--midi-file", str(mid)])
    for i in range(2000):
        b.send(f"/nn/r{i % 3}/grad_norm/l{i % 7}", 0.001 * (1 + i % 90))
        if i % 50 == 0:
            time.sleep(0.005)
    first = b.status()["outputs"]["midi_file"]["events"]
    wait_until(lambda: note_ons(mid) >= first, 10.0, "a save of every note so far")
    for i in range(2000):  # killed in the middle of this burst and its save
        b.send(f"/nn/r{i % 3}/grad_norm/l{i % 7}", 0.001 * (1 + i % 90))
    b.stop(signal.SIGKILL)
    mf = mido.MidiFile(str(mid))
    assert first > 20 and note_ons(mid) >= first
    # The tempo track + one per run and channel (each run's 7 layers on 7 channels).
    assert len(mf.tracks) == 1 + 3 * 7 and {t.name.split()[0] for t in mf.tracks[1:]} == {"r0", "r1", "r2"}


@pytest.mark.parametrize("small_disk", ["40m"], indirect=True)
def test_the_recording_buffer_is_bounded_while_the_disk_is_full(bridge_proc: Any, small_disk: Path) -> None:
    """Issue 16, item 8: what cannot be held is shed and counted, the rest written once the disk frees."""
    from trainsound.bridge.outputs.record import MAX_PENDING_BYTES
    from trainsound.bridge.wire.osc import encode_message

    rec = small_disk / "s.tsr"
    b = bridge_proc(["--no-midi", "--record", str(rec)])
    filler = fill(small_disk, leave=0)
    spectrum = encode_message("/nn/r/activation_spectrum/l", [b"\0\0\x80\x3f" * 15_000])  # 60 kB
    n = MAX_PENDING_BYTES // 60_000 + 60
    for i in range(n):
        b.send_raw(spectrum)
        if i % 10 == 0:
            time.sleep(0.01)
    wait_until(lambda: b.status()["outputs"]["record"]["shed"] > 0)
    st = b.status()["outputs"]["record"]
    assert st["ok"] is False and st["why"].startswith(f"disk full: {rec}")
    assert st["pending_bytes"] <= MAX_PENDING_BYTES
    filler.unlink()
    wait_until(lambda: b.status()["outputs"]["record"]["ok"])
    full = b.status()
    st = full["outputs"]["record"]
    rc, err = b.stop()
    assert rc == 0
    assert "writing again" in err
    assert sum(1 for _ in iter_messages(rec)) == st["records"]  # every record kept was written
    assert st["records"] + st["shed"] == full["accepted"]  # every message recorded or counted as shed
