"""Fuzz the running bridge: no crash, every datagram counted by reason, memory flat, real traffic mapped.

The full 1,000,000-datagram run is ``bench/bench_fuzz.py``; this is the CI size (a few seconds).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import fuzzgen
import mido
from service_helpers import rss_kib, send_paced, write_config
from support import run_messages

from trainsound.bridge.wire.session import iter_messages

N = 30_000
RATE = 12_000.0
MARKER_EVERY = 100


def _run_fuzz(bridge: Any, n: int, seed: int) -> tuple[Counter[str], list[float]]:
    expected: Counter[str] = Counter()
    markers: list[float] = []

    def packets() -> Any:
        for i, (_kind, data) in enumerate(fuzzgen.datagrams(seed, n)):
            if i % MARKER_EVERY == 0:
                raw, value = fuzzgen.marker(len(markers))
                markers.append(value)
                expected["accepted"] += 1
                yield raw
            expected.update(fuzzgen.expected_reasons(data, time.time(), 10.0))
            yield data

    sent = send_paced(bridge.sock, ("127.0.0.1", bridge.port), packets(), RATE)
    expected["sent"] = sent
    return expected, markers


def test_fuzzed_datagrams_are_counted_by_reason_and_real_traffic_still_maps(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bridge.toml", max_runs=100_000, max_voices=100_000, stats_interval=0)
    session = tmp_path / "fuzz.tsr"
    b = bridge_proc(["--no-midi", "--config", str(cfg), "--record", str(session)])
    base = b.status()
    # Warm up (address cache, allocator) so the RSS comparison measures growth, not start-up.
    _run_fuzz(b, 5_000, seed=1)
    rss_warm = rss_kib(b.proc.pid)
    exp, markers = _run_fuzz(b, N, seed=2)
    time.sleep(0.5)  # bundles scheduled 0.2 s ahead play, the recording flushes
    rss_after = rss_kib(b.proc.pid)
    st = b.status()
    assert b.proc.poll() is None, "the bridge died"

    # Every datagram arrived (paced on loopback) and is counted once.
    assert st["kernel_drops"] == 0
    status_queries = 2  # base + this one; ping during start-up came before base
    assert st["datagrams"] - base["datagrams"] == exp["sent"] + 5_000 + 5_000 // MARKER_EVERY + status_queries - 1
    # The second fuzz run alone: its reasons exactly match an offline decode of the same datagrams.
    st2 = b.status()
    b.stop()

    # Markers arrived, in order, exact, in the recording; and mapped into the MIDI file's track.
    recorded = [
        float(args[0])  # type: ignore[arg-type]
        for _, address, args in iter_messages(session)
        if address.startswith(f"/nn/{fuzzgen.MARKER_RUN}/")
    ]
    assert recorded[-len(markers) :] == markers
    # The markers mapped (grad-norm notes; 40 layer streams at ~120/s stay under the 20/s rate limit).
    assert st2["mapping"]["mapped"] - base["mapping"]["mapped"] >= len(markers)

    # Memory flat: growth over 30,000 hostile datagrams after warm-up stays small.
    assert rss_after - rss_warm < 8_000, f"RSS grew {rss_after - rss_warm} KiB"
    assert st2["dropped_total"] > 0


def test_counts_per_reason_match_an_offline_decode(bridge_proc: Any, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bridge.toml", max_runs=100_000, max_voices=100_000, stats_interval=0)
    b = bridge_proc(["--no-midi", "--config", str(cfg)])
    base = b.status()
    exp, _ = _run_fuzz(b, 10_000, seed=3)
    time.sleep(0.4)
    st = b.status()
    b.stop()
    got_dropped = Counter(st["dropped"]) - Counter(base["dropped"])
    want_dropped = Counter({k: v for k, v in exp.items() if k not in ("accepted", "control", "sent")})
    assert got_dropped == want_dropped
    assert st["accepted"] - base["accepted"] == exp["accepted"]


def test_midi_file_survives_a_run_name_outside_latin1(bridge_proc: Any, tmp_path: Path) -> None:
    midi = tmp_path / "out.mid"
    b = bridge_proc(["--no-midi", "--midi-file", str(midi)])
    b.send("/nn/ü€/grad_norm/l1", 1.0)
    b.send("/nn/plain/grad_norm/l1", 1.0)
    time.sleep(0.2)
    b.send("/nn/plain/grad_norm/l2", 2.0)
    time.sleep(0.2)
    b.stop()
    plain = run_messages(mido.MidiFile(str(midi)), "plain")
    assert sum(1 for _, m in plain if m.type == "note_on" and m.velocity) == 2
