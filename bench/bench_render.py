"""Sine renderer benchmarks: offline real-time factor and live underruns under OSC load.

Offline: N voices whose values change 20 times a second (a training step every 50 ms, every layer
reported), rendered through the real ``SineOut`` on the event clock; against a naive baseline (one
``np.sin`` call per voice per block, the seeds' approach) measured in the same run.

Live: a real ``trainsound bridge --audio`` subprocess plays on a private jackd (dummy backend,
256-frame blocks at 48 kHz) while this process sends 10,000 OSC msg/s at it; underruns are read
from the bridge's status. The machine is shared, so the same run first measures jackd's own xrun
rate with nothing playing (a JACK client here counts the server's xrun notifications, idle for
``--baseline-seconds``), then keeps counting them during the load: a reader can tell machine noise
from the renderer's own underruns. The load average is printed with the results.

    .venv/bin/python bench/bench_render.py [--seconds 60] [--baseline-seconds 30] [--offline-seconds 20]
                                           [--skip-live]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _answers
import numpy as np

from trainsound.bridge.config import default
from trainsound.bridge.mapped import Mapped
from trainsound.bridge.outputs.sine import SineOut
from trainsound.bridge.wire.osc import encode_message

SR = 48_000
BLOCK = 256
STEP_S = 0.05


def offline_rtf(voices: int, seconds: float) -> tuple[float, float]:
    """``(real-time factor of SineOut alone, the same counting the construction of its input)``.

    Each step's input (a list of ``Mapped``, what the mapping engine hands the output) is built
    outside the timed calls; building it costs ~0.5 µs per value (~0.65 ms per audio second at
    64 voices), which the second figure adds back, for comparison with runs that timed it.
    """
    cfg = default()
    rng = np.random.default_rng(0)
    steps = int(seconds / STEP_S)
    t_in = elapsed = 0.0
    with tempfile.TemporaryDirectory() as d:
        out = SineOut(cfg, wav=Path(d) / "b.wav")
        for s in range(steps):
            t = s * STEP_S
            t0 = time.perf_counter()
            norms = rng.uniform(0.2, 0.8, voices)
            mapped = [Mapped(t, "r", 0, "g", "note", ("r", f"l{i}"), i, 1.0, float(norms[i]), 1, (), (), 0.1)
                      for i in range(voices)]
            t1 = time.perf_counter()
            out.handle(None, mapped)
            out.tick(t + STEP_S)
            t2 = time.perf_counter()
            t_in += t1 - t0
            elapsed += t2 - t1
        t0 = time.perf_counter()
        out.close()
        elapsed += time.perf_counter() - t0
    return seconds / elapsed, seconds / (elapsed + t_in)


def naive_rtf(voices: int, seconds: float) -> float:
    """One np.sin per voice per 256-sample block, phase accumulated per voice (the seeds' way, vectorised per block)."""
    rng = np.random.default_rng(0)
    phase = np.zeros(voices)
    n = np.arange(BLOCK)
    blocks = int(seconds * SR / BLOCK)
    per_step = int(STEP_S * SR / BLOCK)
    t0 = time.perf_counter()
    freqs = rng.uniform(100, 2000, voices)
    for b in range(blocks):
        if b % per_step == 0:
            freqs = rng.uniform(100, 2000, voices)
        out = np.zeros(BLOCK)
        for v in range(voices):
            w = 2 * np.pi * freqs[v] / SR
            out += 0.1 * np.sin(phase[v] + w * n)
            phase[v] = (phase[v] + w * BLOCK) % (2 * np.pi)
    return seconds / (time.perf_counter() - t0)


class XrunCounter:
    """A JACK client with no ports and no process callback that counts the server's xrun notifications."""

    def __init__(self) -> None:
        import jack

        self.client = jack.Client("xrun_counter", no_start_server=True)
        self.xruns = 0
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, _delay: float) -> None:
        self.xruns += 1

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def live_underruns(seconds: float, rate: int, baseline: float) -> dict[str, object]:
    if not shutil.which("jackd"):
        return {"error": "jackd not installed"}
    name = f"bench_{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1", JACK_NO_START_SERVER="1", JACK_DEFAULT_SERVER=name)
    jackd = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", str(SR), "-p", str(BLOCK)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bridge = None
    counter = None
    saved_server = os.environ.get("JACK_DEFAULT_SERVER")
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, capture_output=True, check=True)
        os.environ["JACK_DEFAULT_SERVER"] = name
        os.environ["JACK_NO_START_SERVER"] = "1"
        counter = XrunCounter()
        # Idle baseline: jackd alone (this process sleeps), the machine as busy as it is.
        time.sleep(1.0)
        idle0, t_idle = counter.xruns, time.perf_counter()
        time.sleep(baseline)
        idle = {"seconds": round(time.perf_counter() - t_idle, 1), "jackd_xruns": counter.xruns - idle0,
                "cycles": int(baseline * SR / BLOCK)}
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        bridge = subprocess.Popen([sys.executable, "-m", "trainsound.bridge", "bridge", "--no-midi", "--audio",
                                   "--listen", f"127.0.0.1:{port}", "--stats-interval", "0"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dest = ("127.0.0.1", port)

        def status(what: str) -> dict[str, Any] | None:
            return _answers.status(port, 30.0, what)  # TCP, as `trainsound status` asks

        deadline = time.monotonic() + 60
        while status("status at start") is None:  # the bridge is up
            if bridge.poll() is not None or time.monotonic() > deadline:
                return {"error": "the bridge did not answer within 60 s of its start"}
        time.sleep(1.0)  # past the engine's start-up
        st0 = status("status before the live run")
        if st0 is None:
            return {"error": "no status before the live run within 30 s"}
        before = st0["outputs"]["sine"]
        layers = 64
        msgs = [encode_message(f"/nn/r/grad_norm/l{i}", [float(v)])
                for i, v in enumerate(np.geomspace(1e-3, 10, layers))]
        sent = 0
        x0 = counter.xruns
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                s.sendto(msgs[sent % layers], dest)
                sent += 1
            time.sleep(0.001)
        load_xruns = counter.xruns - x0
        after = status("status after the live run")
        if after is None:
            return {"error": "no status after the live run within 30 s", "sent": sent, "jackd_xruns": load_xruns}
        sine = after["outputs"]["sine"]
        return {
            "idle_baseline": idle,
            "load": {
                "seconds": seconds, "sent": sent, "rate": round(sent / seconds), "received": after["received"],
                "voices": sine["voices"], "callbacks": sine["callbacks"] - before["callbacks"],
                "underruns": sine["underruns"] - before["underruns"],
                "device_underruns": sine["device_underruns"] - before["device_underruns"],
                "late_blocks": sine["late_blocks"] - before["late_blocks"],
                "startup_underruns": sine["startup_underruns"], "jackd_xruns": load_xruns,
            },
        }
    finally:
        if bridge is not None:
            bridge.send_signal(signal.SIGTERM)
            try:
                bridge.wait(20)
            except subprocess.TimeoutExpired:
                bridge.kill()
        if counter is not None:
            counter.close()
        if saved_server is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = saved_server
        jackd.terminate()
        jackd.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="live run length (default 60)")
    ap.add_argument("--rate", type=int, default=10_000, help="OSC messages per second in the live run")
    ap.add_argument("--baseline-seconds", type=float, default=30.0,
                    help="jackd alone, before the live run: its own xrun rate (default 30)")
    ap.add_argument("--offline-seconds", type=float, default=20.0, help="audio seconds per offline measurement")
    ap.add_argument("--skip-live", action="store_true")
    args = ap.parse_args()
    la = os.getloadavg()
    print(f"offline render, values change every {STEP_S * 1000:.0f} ms, {SR} Hz stereo float32 WAV "
          f"(load average {la[0]:.2f}):")
    for v in (4, 64, 512):
        secs = args.offline_seconds if v < 512 else args.offline_seconds / 4
        rtf, with_inputs = offline_rtf(v, secs)
        base = naive_rtf(v, min(secs, 5.0 if v < 512 else 1.0))
        print(f"  {v:4d} voices: {rtf:8.0f}× real time ({with_inputs:5.0f}× counting building the input)   "
              f"(naive per-voice np.sin baseline: {base:7.0f}×; speed-up {rtf / base:5.1f}×)")
    if not args.skip_live:
        la0 = os.getloadavg()
        r = live_underruns(args.seconds, args.rate, args.baseline_seconds)
        la1 = os.getloadavg()
        print(f"live: {json.dumps(r)}")
        print(f"load average (1/5/15 min) before the live run: {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f}; "
              f"after: {la1[0]:.2f} {la1[1]:.2f} {la1[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
