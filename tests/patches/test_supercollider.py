"""patches/supercollider/trainsound.scd run for real: bridge → sclang → scsynth (JACK dummy) → recorded sound.

Heavy: sclang (supercollider-language) boots scsynth itself, as a user's evaluation would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from patchkit import band_energy
from support import dominant_hz, free_udp_port, rms, wait_until

import trainsound.patches

pytestmark = [pytest.mark.supercollider, pytest.mark.jack, pytest.mark.slow]

SCD = Path(trainsound.patches.__file__).parent / "supercollider" / "trainsound.scd"
READY = re.compile(r"trainsound: listening on port (\d+)")


class Sclang:
    """Headless sclang evaluating a file, in its own process group (it starts scsynth as a child)."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["sclang", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        def check() -> re.Match[str] | None:
            found = next((m for line in self.lines if (m := pattern.search(line))), None)
            if found is None and self.proc.poll() is not None:
                raise AssertionError(f"sclang exited before printing {pattern.pattern!r}; last lines:\n"
                                     + "\n".join(self.lines[-30:]))
            return found

        found: re.Match[str] = wait_until(check, timeout, lambda: f"sclang printing {pattern.pattern!r}; last lines:\n"
                                          + "\n".join(self.lines[-30:]), every=0.05)
        return found

    def stop(self) -> None:
        # The whole group: sclang and the scsynth it booted (both started here, nothing else is in it).
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self._t.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def sclang(jack_server: str) -> Iterator[Sclang]:
    if not shutil.which("sclang"):
        pytest.fail("sclang is not installed: run the README's test command (installs supercollider-language)")
    with tempfile.TemporaryDirectory() as runtime:
        env = dict(
            os.environ,
            QT_QPA_PLATFORM="offscreen",
            QTWEBENGINE_DISABLE_SANDBOX="1",
            XDG_RUNTIME_DIR=runtime,
            TRAINSOUND_SCSYNTH_PORT=str(free_udp_port()),
        )
        lang = Sclang(SCD, env)
        try:
            yield lang
        finally:
            lang.stop()


def test_bridge_to_sclang_to_scsynth_plays_the_layer_pitch_and_the_alarm(sclang: Sclang, recorder, bridge_proc) -> None:
    port = int(sclang.wait_for(READY, timeout=90).group(1))
    recorder.connect_when_present("SuperCollider:out_1", timeout=20)
    b = bridge_proc(["--no-midi", "--osc-out", f"127.0.0.1:{port}"])
    # grad norm 0.1 → default rule's log scale 1e-4..1e2 → norm 0.5 → 110 · 2^(4 · 0.5) = 440 Hz.
    b.send("/nn/mnist/grad_norm/fc1", 0.1)
    sclang.wait_for(re.compile(r"new voice mnist/fc1"), timeout=10)
    t_voice = len(recorder.chunks)
    time.sleep(1.2)
    t_nan = len(recorder.chunks)
    b.send("/nn/mnist/grad_norm/fc1", float("nan"))
    sclang.wait_for(re.compile(r"NaN/Inf alarm on mnist/fc1"), timeout=10)
    time.sleep(0.6)
    x = recorder.stop()
    b.stop()
    block = len(x) // max(1, len(recorder.chunks))
    voice = x[(t_voice * block) + recorder.sr // 5 : t_nan * block]
    assert rms(voice) > 0.02
    assert dominant_hz(voice, recorder.sr) == pytest.approx(440, abs=5)
    after = x[t_nan * block :]
    assert np.isfinite(x).all()
    alarm = band_energy(after, recorder.sr, 880, 20) + band_energy(after, recorder.sr, 1175, 20)
    assert alarm > 0.2, alarm
