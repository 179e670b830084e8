"""Sine renderer benchmarks: offline real-time factor and live underruns under OSC load.

Offline: N voices whose values change 20 times a second (a training step every 50 ms, every layer
reported), rendered through the real ``SineOut`` on the event clock; against a naive baseline (one
``np.sin`` call per voice per block, the seeds' approach) measured in the same run.

Live: a real ``trainsound bridge --audio`` subprocess plays on a private jackd (dummy backend,
256-frame blocks at 48 kHz) while this process sends 10,000 OSC msg/s at it; underruns are read
from the bridge's status.

    .venv/bin/python bench/bench_render.py [--seconds 60] [--offline-seconds 20] [--skip-live]
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

import numpy as np

from trainsound.bridge.config import default
from trainsound.bridge.mapping import Mapped
from trainsound.bridge.osc_codec import decode_message, encode_message
from trainsound.bridge.outputs.sine import SineOut

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


def live_underruns(seconds: float, rate: int) -> dict[str, object]:
    if not shutil.which("jackd"):
        return {"error": "jackd not installed"}
    name = f"bench_{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1", JACK_NO_START_SERVER="1", JACK_DEFAULT_SERVER=name)
    jackd = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", str(SR), "-p", str(BLOCK)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bridge = None
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, capture_output=True, check=True)
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

        def status() -> dict[str, object]:
            s.sendto(encode_message("/trainsound/status"), dest)
            t_end = time.time() + 5
            while time.time() < t_end:
                try:
                    data, _ = s.recvfrom(1 << 20)
                except TimeoutError:
                    s.sendto(encode_message("/trainsound/status"), dest)
                    continue
                addr, args = decode_message(data)
                if addr == "/trainsound/status.reply":
                    return dict(json.loads(str(args[0])))
            raise TimeoutError("no status from the bridge")

        before = status()["outputs"]["sine"]  # type: ignore[index]
        layers = 64
        msgs = [encode_message(f"/nn/r/grad_norm/l{i}", [float(v)])
                for i, v in enumerate(np.geomspace(1e-3, 10, layers))]
        sent = 0
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                s.sendto(msgs[sent % layers], dest)
                sent += 1
            time.sleep(0.001)
        after = status()
        sine = after["outputs"]["sine"]  # type: ignore[index]
        return {
            "seconds": seconds, "sent": sent, "rate": sent / seconds, "received": after["received"],
            "voices": sine["voices"], "callbacks": sine["callbacks"] - before["callbacks"],  # type: ignore[index]
            "underruns": sine["underruns"] - before["underruns"],  # type: ignore[index]
            "startup_underruns": sine["startup_underruns"],
        }
    finally:
        if bridge is not None:
            bridge.send_signal(signal.SIGTERM)
            try:
                bridge.wait(20)
            except subprocess.TimeoutExpired:
                bridge.kill()
        jackd.terminate()
        jackd.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="live run length (default 60)")
    ap.add_argument("--rate", type=int, default=10_000, help="OSC messages per second in the live run")
    ap.add_argument("--offline-seconds", type=float, default=20.0, help="audio seconds per offline measurement")
    ap.add_argument("--skip-live", action="store_true")
    args = ap.parse_args()
    print(f"offline render, values change every {STEP_S * 1000:.0f} ms, {SR} Hz stereo float32 WAV:")
    for v in (4, 64, 512):
        secs = args.offline_seconds if v < 512 else args.offline_seconds / 4
        rtf, with_inputs = offline_rtf(v, secs)
        base = naive_rtf(v, min(secs, 5.0 if v < 512 else 1.0))
        print(f"  {v:4d} voices: {rtf:8.0f}× real time ({with_inputs:5.0f}× counting building the input)   "
              f"(naive per-voice np.sin baseline: {base:7.0f}×; speed-up {rtf / base:5.1f}×)")
    if not args.skip_live:
        r = live_underruns(args.seconds, args.rate)
        print(f"live: {json.dumps(r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
