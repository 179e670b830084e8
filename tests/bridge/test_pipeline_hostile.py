"""Issue 16, what the pipeline makes of hostile or unusual input, through the real bridge: escaped log
lines, junk run names, names in bytes, OSC 1.0's optional types, the global NaN-alarm rate."""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path
from typing import Any

from trainsound.bridge.wire.osc import encode_bundle, encode_message, pad


def _raw(address: str, tags: str, body: bytes = b"") -> bytes:
    return pad(address.encode()) + pad(tags.encode()) + body


def test_a_newline_on_the_wire_cannot_forge_a_log_line(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    forged = "\n2026-01-01 00:00:00,000 CRITICAL trainsound.bridge: disk on fire"
    b.send_raw(_raw(f"/nn/r{forged}/loss", ",f", struct.pack(">f", 0.5)))
    b.send_raw(_raw(f"/elsewhere{forged}\r\x1b[2J", ",f", struct.pack(">f", 0.5)))
    time.sleep(0.2)
    st = b.status()
    _, err = b.stop()
    assert st["dropped"] == {"bad_name": 1, "not_nn": 1}
    assert not [ln for ln in err.splitlines() if "CRITICAL" in ln and not ln.lstrip().startswith("20")]
    assert not [ln for ln in err.splitlines() if ln.startswith("2026-01-01")]
    assert "\\n2026-01-01 00:00:00,000 CRITICAL" in err and "\\x1b[2J" in err


def test_junk_run_names_never_lock_a_real_run_out(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    for i in range(64):
        b.send(f"/nn/junk{i}/loss", 1.0)
    time.sleep(0.2)
    b.send("/nn/real/grad_norm/fc1", 0.5)
    time.sleep(0.2)
    st = b.status()
    # The idlest eighth (8 of 64) made room: junk0 … junk7.
    assert "real" in st["runs"] and len(st["runs"]) == 57 and not {f"junk{i}" for i in range(8)} & set(st["runs"])
    assert "too_many_runs" not in st["dropped"] and st["noted"]["run_evicted"] == 1
    assert any("real" in v for vs in st["voices"].values() for v in vs)


def test_names_count_bytes_and_refuse_pattern_and_control_characters(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    b.send(f"/nn/{'é' * 64}/loss", 0.5)  # 128 bytes: the limit
    b.send(f"/nn/{'é' * 65}/loss", 0.5)  # 65 characters, 130 bytes: too long (before: accepted)
    for bad in ("a b", "a*", "x[0]", "{r}", "a?", "a,b", "a#", "tab\there", "bell\x07"):
        b.send(f"/nn/{bad}/loss", 0.5)
    time.sleep(0.2)
    st = b.status()
    assert st["accepted"] == 1 and st["dropped"] == {"name_too_long": 1, "bad_name": 9}


def test_optional_osc_types_are_decoded_and_refused_by_the_protocol(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    accepted = [
        _raw("/nn/r/loss", ",d", struct.pack(">d", 1e300)),  # a double beyond float32
        _raw("/nn/r/step", ",h", struct.pack(">q", 2**40)),  # an int64 step
        _raw("/nn/r/step", ",hi", struct.pack(">qi", 5, 1)),
        _raw("/nn/r/weight/fc1", ",dfdhd", struct.pack(">dfdqd", 0.1, 0.2, 0.3, 4, 0.005)),
        _raw("/nn/r/event", ",S", pad(b"start")),  # a symbol is a string
    ]
    wrong_type = [
        _raw("/nn/r/loss", ",T"), _raw("/nn/r/loss", ",F"), _raw("/nn/r/loss", ",N"), _raw("/nn/r/loss", ",I"),
        _raw("/nn/r/loss", ",[f]", struct.pack(">f", 0.5)), _raw("/nn/r/loss", ",t", struct.pack(">Q", 1)),
        _raw("/nn/r/loss", ",c", struct.pack(">I", 65)), _raw("/nn/r/loss", ",r", struct.pack(">I", 1)),
        _raw("/nn/r/loss", ",m", struct.pack(">I", 1)), _raw("/nn/r/loss", ",S", pad(b"x")),
        _raw("/nn/r/step", ",f", struct.pack(">f", 1.0)), _raw("/nn/r/event", ",c", struct.pack(">I", 115)),
    ]
    for d in accepted + wrong_type:
        b.send_raw(d)
    b.send_raw(encode_message("/nn/r/loss", [0.5]) + b"\0\0\0\0")
    b.send_raw(encode_bundle([]))
    time.sleep(0.3)
    st = b.status()
    assert st["accepted"] == len(accepted)
    assert st["dropped"] == {"wrong_type": len(wrong_type), "trailing_bytes": 1, "empty_bundle": 1}


def test_nan_alarms_have_a_global_rate(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text("[alarm]\nmax_per_second = 5\n")
    b = bridge_proc(["--no-midi", "--config", str(cfg)])
    t0 = time.monotonic()
    for i in range(400):  # 400 runs, each a NaN incident of its own: only the global rate keeps them quiet
        b.send(f"/nn/r{i}/grad_norm/l{i}", math.nan)
    took = time.monotonic() - t0
    time.sleep(0.3)
    m = b.status()["mapping"]
    assert 5 <= m["alarms"] <= 5 + 5 * (took + 0.5) + 1  # a burst of 5, then 5 a second
    # Every NaN incident is sounded or counted over the rate — also those beyond the voice limit (issue 12).
    assert m["alarms"] + m["alarms_limited"] == 400
