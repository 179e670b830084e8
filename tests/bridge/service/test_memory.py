"""Memory bounded in bytes, what is shed counted in the status (issue 16, item 8), through the real bridge."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

from service_helpers import write_config

from trainsound.bridge.pipeline import SCHEDULE_MAX_BYTES
from trainsound.bridge.wire.osc import encode_message, unix_to_timetag


def bundle(when: float, message: bytes) -> bytes:
    return b"#bundle\0" + struct.pack(">Q", unix_to_timetag(when)) + struct.pack(">I", len(message)) + message


def test_the_schedule_queue_is_bounded_in_bytes(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bridge.toml", schedule_horizon=600.0, stats_interval=0)
    b = bridge_proc(["--no-midi", "--config", str(cfg)])
    big = encode_message("/nn/r/metric/blobby", [b"\x01" * 60_000])  # valid OSC, refused later by /nn
    n = (SCHEDULE_MAX_BYTES // 120_000) + 200
    for i in range(n):
        b.send_raw(bundle(time.time() + 300, big))
        if i % 20 == 0:
            time.sleep(0.01)
    time.sleep(0.5)
    st = b.status()
    assert st["scheduled_bytes"] <= SCHEDULE_MAX_BYTES
    assert st["scheduled"] < n and st["noted"]["schedule_full"] >= 150
    assert b.stop()[0] == 0


def test_the_nan_incident_state_is_bounded(bridge_proc: Any) -> None:
    b = bridge_proc(["--no-midi"])
    for i in range(6000):  # distinct addresses, each non-finite: one NaN incident that tracks at most 4,096
        b.send_raw(encode_message(f"/nn/r/metric/m{i}", [float("nan")]))
        if i % 100 == 0:
            time.sleep(0.003)
    time.sleep(0.3)
    st = b.status()
    m = st["mapping"]
    assert m["nonfinite"] == 6000 and m["alarms"] == 1
    assert m["alarm_state_shed"] == 6000 - 4096
    [nan] = st["alarms"]["recent"]
    assert nan["kind"] == "nan" and nan["streams"] == 6000 and len(nan["members"]) == 64
    assert b.stop()[0] == 0
