"""The default loss CC is auto-ranged: through the real bridge into a MIDI file, trends stay trends.

A loss falling from 3.0 to 0.003 over 500 steps must give a non-increasing CC with at least 20 distinct
values spanning at least 80 % of the range; a stationary noisy loss must still use 30 % of it (a loss starts at
0.9 and the map never re-anchors — issue 27 — so its noise above the first value has only the room above).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import mido
import numpy as np
from support import BridgeProc, free_udp_port

from trainsound.bridge.wire.osc import encode_bundle, encode_message

STEPS = 500
LOSS_CC = 74


def loss_ccs(mid: Path, run: str) -> list[int]:
    [track] = [t for t in mido.MidiFile(str(mid)).tracks if t.name == f"{run} loss"]  # named after its voice
    return [m.value for m in track if m.type == "control_change" and m.control == LOSS_CC]


def test_falling_and_stationary_losses_through_the_bridge_to_midi(tmp_path: Path) -> None:
    mid = tmp_path / "loss.mid"
    rng = np.random.default_rng(3)
    falling = 3.0 * 0.001 ** (np.arange(STEPS) / (STEPS - 1))
    noisy = 2.0 * np.exp(rng.normal(0.0, 0.15, STEPS))
    b = BridgeProc(["--no-midi", "--midi-file", str(mid)], free_udp_port())
    try:
        for i in range(STEPS):
            b.send_raw(encode_bundle([encode_message("/nn/fall/loss", [float(falling[i])]),
                                      encode_message("/nn/noise/loss", [float(noisy[i])])]))
            # 40 steps/s, under the loss rule's 50 Hz rate limit: every value is sent, so the noise's spread is
            # the map's (43 codes), not a sample's (a random half of it spread 38-42 codes: the test flaked)
            time.sleep(0.025)
        time.sleep(0.1)
        assert b.status()["accepted"] == 2 * STEPS
    finally:
        rc, err = b.stop()
    assert rc == 0, err

    fall = loss_ccs(mid, "fall")
    assert all(a >= b for a, b in itertools.pairwise(fall)), fall
    assert len(set(fall)) >= 20 and max(fall) - min(fall) >= 0.8 * 127, (len(set(fall)), min(fall), max(fall))

    noise = loss_ccs(mid, "noise")
    late = noise[len(noise) // 5 :]  # after the first fifth
    lo, hi = np.percentile(late, [5, 95])
    assert hi - lo >= 0.3 * 127, (lo, hi)
