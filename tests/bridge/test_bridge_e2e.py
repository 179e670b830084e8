"""The bridge as a real process: external OSC clients, bad input, recording and replay, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest
from corpus import MALFORMED

from trainsound.bridge.wire.osc import encode_bundle, encode_message
from trainsound.bridge.wire.session import iter_messages

TS = [sys.executable, "-m", "trainsound.bridge"]


def test_oscsend_from_liblo_is_recorded(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = tmp_path / "s.tsr"
    b = bridge_proc(["--no-midi", "--record", str(rec)])
    for args in (["/nn/ext/step", "ii", "7", "1"], ["/nn/ext/loss", "f", "0.25"], ["/nn/ext/loss", "i", "3"],
                 ["/nn/ext/event", "s", "start"], ["/nn/ext/grad_norm/conv1", "f", "0.5"]):
        subprocess.run(["oscsend", "127.0.0.1", str(b.port), *args], check=True, timeout=10)
    time.sleep(0.3)
    st = b.status()
    assert st["accepted"] == 5 and st["dropped_total"] == 0
    b.stop()
    got = [(a, v) for _, a, v in iter_messages(rec)]
    assert got == [("/nn/ext/step", (7, 1)), ("/nn/ext/loss", (0.25,)), ("/nn/ext/loss", (3,)),
                   ("/nn/ext/event", ("start",)), ("/nn/ext/grad_norm/conv1", (0.5,))]


def test_bad_input_is_counted_by_reason_and_never_crashes(bridge_proc) -> None:  # type: ignore[no-untyped-def]
    b = bridge_proc(["--no-midi"])
    expected: dict[str, int] = {}
    for data, reason in MALFORMED.values():
        b.send_raw(data)
        expected[reason] = expected.get(reason, 0) + 1
    # Well-formed OSC that does not fit the protocol.
    for address, args, reason in [
        ("/other", [1.0], "not_nn"), ("/nn/r/bogus", [1.0], "unknown_address"),
        ("/nn/r/loss", ["high"], "wrong_type"), ("/nn/r/loss", [], "wrong_arg_count"),
        ("/nn/r/event", ["boom"], "unknown_event"),
    ]:
        b.send(address, *args)
        expected[reason] = expected.get(reason, 0) + 1
    b.send("/nn/r/loss", 0.5)
    b.send("/nn/r/grad_norm/fc1", math.nan)
    b.send_raw(encode_bundle([encode_message("/nn/r/step", [1]), encode_message("/nn/r/loss", [0.4])]))
    time.sleep(0.3)
    st = b.status()
    assert st["dropped"] == expected
    assert st["accepted"] == 4 and st["mapping"]["nonfinite"] == 1 and st["mapping"]["alarms"] == 1
    rc, err = b.stop()
    assert rc == 0
    assert "Traceback" not in err
    assert "dropped from 127.0.0.1:" in err and "unknown_address: /nn/r/bogus" in err


def test_counters_logged_on_sigusr1(bridge_proc) -> None:  # type: ignore[no-untyped-def]
    import signal

    b = bridge_proc(["--no-midi"])
    b.send("/nn/r/loss", 0.5)
    time.sleep(0.2)
    b.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    _, err = b.stop()
    assert err.count("counters: received=") >= 2  # once on SIGUSR1, once at shutdown
    assert "listening on udp://127.0.0.1:" in err.splitlines()[0]


def test_replay_makes_the_same_midi_file_after_the_fact(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec, live_mid, replay_mid = tmp_path / "s.tsr", tmp_path / "live.mid", tmp_path / "replay.mid"
    b = bridge_proc(["--no-midi", "--record", str(rec), "--midi-file", str(live_mid)])
    for i in range(30):
        b.send_raw(encode_bundle([
            encode_message("/nn/r/step", [i]),
            encode_message("/nn/r/loss", [2.0 / (i + 1)]),
            encode_message("/nn/r/grad_norm/conv1", [10 ** (-3 + i / 10)]),
            encode_message("/nn/r/grad_norm/fc1", [10 ** (1 - i / 10)]),
        ]))
        time.sleep(0.06)
    b.stop()
    r = subprocess.run([*TS, "replay", str(rec), "--midi-file", str(replay_mid)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "replayed 120 messages" in r.stderr

    def content(p: Path) -> list[tuple[str, int, int, int]]:
        mf = mido.MidiFile(str(p))
        return [(m.type, m.channel, getattr(m, "note", getattr(m, "control", 0)), getattr(m, "velocity", 0))
                for tr in mf.tracks for m in tr if not m.is_meta]

    assert content(replay_mid) == content(live_mid)
    assert abs(mido.MidiFile(str(replay_mid)).length - mido.MidiFile(str(live_mid)).length) < 0.05


def test_replay_dump_and_errors(tmp_path: Path) -> None:
    from trainsound.bridge.wire.session import SessionWriter

    rec = tmp_path / "s.tsr"
    with open(rec, "wb") as fh:
        w = SessionWriter(fh, 0.0)
        w.write(1.0, encode_message("/nn/r/loss", [math.nan]))
        w.flush()
        fh.write(b"\x00\x01")  # a torn record, as after a crash
    r = subprocess.run([*TS, "replay", str(rec), "--dump"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout) == {"t": 1.0, "address": "/nn/r/loss", "args": [None]}
    bad = tmp_path / "bad.tsr"
    bad.write_bytes(b"hello")
    r = subprocess.run([*TS, "replay", str(bad), "--midi-file", str(tmp_path / "x.mid")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.strip().endswith(f"{bad}: not a trainsound session recording (bad header)")
    assert "Traceback" not in r.stderr


def test_send_one_liner(bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rec = tmp_path / "s.tsr"
    b = bridge_proc(["--no-midi", "--record", str(rec)])
    for words in (["/nn/cli/loss", "0.5"], ["/nn/cli/step", "3", "1"], ["/nn/cli/event", "epoch"],
                  ["/nn/cli/weight/fc1", "0", "0.1", "0.5", "3", "f:0"]):
        subprocess.run([*TS, "send", "--to", f"127.0.0.1:{b.port}", *words], check=True, timeout=30)
    time.sleep(0.2)
    b.stop()
    got = [(a, v) for _, a, v in iter_messages(rec)]
    assert got == [("/nn/cli/loss", (0.5,)), ("/nn/cli/step", (3, 1)), ("/nn/cli/event", ("epoch",)),
                   ("/nn/cli/weight/fc1", (0.0, 0.10000000149011612, 0.5, 3.0, 0.0))]  # typed as /nn expects


@pytest.mark.parametrize("command", ["bridge", "send", "ports", "check-config", "replay"])
def test_help_for_each_command(command: str) -> None:
    r = subprocess.run([*TS, command, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "usage: trainsound" in r.stdout


def test_listen_error_names_the_address(bridge_proc) -> None:  # type: ignore[no-untyped-def]
    b = bridge_proc(["--no-midi"])
    r = subprocess.run([*TS, "bridge", "--no-midi", "--listen", f"127.0.0.1:{b.port}"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert f"cannot listen on udp://127.0.0.1:{b.port}: Address already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_unwritable_midi_file_stops_the_start(tmp_path: Path, udp_port: int) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "o.mid"
    r = subprocess.run([*TS, "bridge", "--no-midi", "--listen", f"127.0.0.1:{udp_port}", "--midi-file", str(out)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"trainsound: error: {out}: cannot write MIDI file" in r.stderr and "Traceback" not in r.stderr
