"""pyo output live on a private jackd (dummy backend), recorded by a JACK client; failure isolation."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from support import dominant_hz, rms

from trainsound.bridge.config import Table, default
from trainsound.bridge.errors import ConfigError
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.wire.osc import decode_message, encode_message

pytestmark = [pytest.mark.pyo, pytest.mark.jack]


def test_pyo_live_on_jack_follows_the_loss(recorder) -> None:
    from trainsound.bridge.outputs.pyo import PyoOut

    name = f"tspyo_{uuid.uuid4().hex[:6]}"
    out = PyoOut(default(), patch="loss_sine", audio="jack", jack_name=name, jack_autoconnect=False)
    try:
        recorder.connect_when_present(f"{name}:output_1")
        pipe = Pipeline(default(), [out])
        pipe.feed_message(time.time(), encode_message("/nn/r/loss", [2.0]))
        time.sleep(0.3)
        n0 = len(recorder.chunks)
        time.sleep(0.6)
        n1 = len(recorder.chunks)
        pipe.feed_message(time.time(), encode_message("/nn/r/loss", [0.5]))
        time.sleep(0.3)
        n2 = len(recorder.chunks)
        time.sleep(0.6)
        n3 = len(recorder.chunks)
        health = out.health()
    finally:
        out.close()
    x = recorder.stop()
    block = len(x) // len(recorder.chunks)
    high, low = x[n0 * block : n1 * block], x[n2 * block : n3 * block]
    assert np.isfinite(x).all() and rms(high) > 0.05
    # soNNify: the first loss is 1000 Hz, a quarter of it 200 + 800/4 = 400 Hz.
    assert dominant_hz(high, recorder.sr) == pytest.approx(1000, abs=5)
    assert dominant_hz(low, recorder.sr) == pytest.approx(400, abs=5)
    assert health["ok"] and health["fed"] == 2 and health["dropped"] == 0


BROKEN = '''
from trainsound.patches.pyo.base import Patch


class Broken(Patch):
    """Plays 300 Hz, raises on the first gradient norm."""

    def __init__(self, server, **options):
        super().__init__(server, **options)
        from pyo import Sine
        self.osc = self.out(Sine(300.0, mul=0.3))

    def on_grad_norm(self, run, layer, norm):
        raise RuntimeError("patch bug")
'''


def test_a_raising_patch_is_silenced_and_the_bridge_and_other_outputs_go_on(
    jack_server: str, recorder, bridge_proc, tmp_path: Path
) -> None:
    patch = tmp_path / "broken.py"
    patch.write_text(BROKEN)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
    try:
        b = bridge_proc(["--no-midi", "--pyo-patch", str(patch), "--osc-out", f"127.0.0.1:{peer.getsockname()[1]}"])
        recorder.connect_when_present("trainsound:output_1")
        time.sleep(0.5)
        n0 = len(recorder.chunks)
        b.send("/nn/r/grad_norm/fc1", 1.0)
        assert decode_message(peer.recvfrom(65536)[0])[0] == "/trainsound/value"
        time.sleep(0.5)
        n1 = len(recorder.chunks)
        time.sleep(0.5)
        b.send("/nn/r/grad_norm/fc2", 1.0)  # OSC out still forwards after the patch died
        assert decode_message(peer.recvfrom(65536)[0])[1][:2] == ("r", "fc2")
        status = b.status()
        code, err = b.stop()
    finally:
        peer.close()
    x = recorder.stop()
    block = len(x) // len(recorder.chunks)
    assert dominant_hz(x[: n0 * block], recorder.sr) == pytest.approx(300, abs=5)
    assert rms(x[n1 * block :]) < 1e-4, "the failed patch is not silent"
    assert code == 0, err
    assert err.count("raised in on_grad_norm") == 1 and "broken.py" in err
    assert "pyo" in str(status) and "RuntimeError: patch bug" in str(status)


def test_pyo_section() -> None:
    from trainsound.bridge.outputs.pyo import PyoOptions, section

    opts = section(Table({"patch": "grad_chord", "audio": "offline", "options": {"level": 0.1}}, "pyo"))
    assert opts == PyoOptions(patch="grad_chord", audio="offline", options={"level": 0.1})
    with pytest.raises(ConfigError, match=r"pyo.audio must be one of jack, portaudio, offline; got 'alsa'"):
        section(Table({"audio": "alsa"}, "pyo"))
