"""Flood the running bridge: memory bounded, drops counted, status answered during it, normal mapping after.

CI size: a few seconds flat out from one sender. The 60 s run at 10× the sustainable rate is bench/bench_flood.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from service_helpers import flood, rss_kib, status_latency, write_config
from support import wait_until

from trainsound.bridge.wire.osc import encode_bundle, encode_message, unix_to_timetag

#: Resident memory growth allowed during a flood (the kernel's 4 MiB socket buffer is not in the process).
RSS_BOUND_KIB = 20_000

PACKETS = [
    encode_message("/nn/f/grad_norm/fc1", [0.5]),
    encode_message("/nn/f/loss", [0.25]),
    encode_bundle([encode_message("/nn/f/step", [1]), encode_message("/nn/f/grad_norm/fc2", [2.0])]),
    b"not osc at all",
    encode_bundle([encode_message("/nn/f/loss", [0.5])], unix_to_timetag(time.time() + 1e6)),  # far future: played now
]


def test_flood_keeps_memory_bounded_and_status_answering(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "b.toml", stats_interval=0)
    b = bridge_proc(["--no-midi", "--config", str(cfg)])
    rss0 = rss_kib(b.proc.pid)
    latencies: list[float] = []
    done = threading.Event()

    def ask() -> None:
        while not done.is_set():
            latencies.append(status_latency(b.port)[0])
            time.sleep(0.2)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        sent, rate = flood(b.port, 3.0, None, PACKETS)
    finally:
        done.set()
        asker.join()
    rss1 = rss_kib(b.proc.pid)
    # The bridge drains what the kernel queued: wait until every datagram is accounted for.
    before = wait_until(lambda: (st := b.status())["datagrams"] + st["kernel_drops"] >= sent and st, 10.0,
                        "every flood datagram processed or counted as dropped")
    b.send("/nn/after/grad_norm/fc1", 1.0)
    after = wait_until(lambda: "after" in (st := b.status())["runs"] and st, 5.0, "the run after the flood")
    rc, _ = b.stop()

    assert rc == 0
    assert latencies and max(latencies) < 1.0, latencies
    assert rss1 - rss0 < RSS_BOUND_KIB, f"RSS grew {rss1 - rss0} KiB during the flood"
    # Every datagram is accounted for: processed (and counted by reason) or dropped by the kernel (counted).
    assert before["datagrams"] + before["kernel_drops"] >= sent
    assert before["dropped"].get("not_osc", 0) > 0 and before["noted"].get("beyond_horizon", 0) > 0
    assert before["scheduled"] == 0
    # After the flood it maps normally.
    assert after["mapping"]["mapped"] == before["mapping"]["mapped"] + 1
    assert "after" in after["runs"]
    print(f"flood: {sent} datagrams at {rate:.0f}/s, kernel drops {before['kernel_drops']}, RSS +{rss1 - rss0} KiB")
