"""Bridge throughput and latency, measured in one run next to a python-osc baseline.

    .venv/bin/python bench/bench_bridge.py [--seconds 2] [--quick] [--detectors]

Sender and receiver are separate processes on loopback. For each receiver and
message shape the rate is raised step by step; the highest rate whose every
datagram was received and accepted (0 drops) is reported. Latency: OSC in →
MIDI out at 1,000 msg/s, timestamped on arrival at a JACK MIDI probe (a private
jackd with the dummy backend). First, in process: the fault detectors' cost per
event, the mapping engine with and without them (``--detectors``: only that).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _answers
import _jackrig
import numpy as np

from trainsound.bridge.wire.osc import encode_bundle, encode_message

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [f"layer{i}" for i in range(64)]


# -- receivers ------------------------------------------------------------------
def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p: int = s.getsockname()[1]
    s.close()
    return p


class Bridge:
    def __init__(self, extra: list[str] | None = None, env: dict[str, str] | None = None, midi: bool = False) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainsound.bridge",
                "-q",
                "bridge",
                *([] if midi else ["--no-midi"]),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--stats-interval",
                "0",
                *(extra or []),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        for _ in range(100):
            try:
                self.sock.sendto(encode_message("/trainsound/ping"), ("127.0.0.1", self.port))
                self.sock.recvfrom(1024)
                return
            except TimeoutError:
                continue
        self.close()
        raise RuntimeError("bridge did not answer /trainsound/ping within 20 s")

    answer_timeout = 10.0

    def status(self) -> dict[str, Any] | None:
        """Over TCP, as ``trainsound status`` asks; ``None`` (reported) when no answer comes in time."""
        return _answers.status(self.port, self.answer_timeout)

    def counts(self) -> tuple[int, int] | None:
        """(messages received, messages accepted), or ``None`` when the bridge did not answer."""
        st = self.status()
        return None if st is None else (st["received"], st["accepted"])

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            print("  bridge: no exit within 20 s of SIGTERM; killed", flush=True)
            self.proc.kill()
            self.proc.communicate()
        self.sock.close()


def _pyosc_server(port: int, q: Any) -> None:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    count = [0]
    lock = threading.Lock()

    def handler(address: str, *args: Any) -> None:
        with lock:
            count[0] += 1

    d = Dispatcher()
    d.set_default_handler(handler)
    srv = ThreadingOSCUDPServer(("127.0.0.1", port), d)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    q.put("ready")
    while True:
        cmd = q.get()
        if cmd == "count":
            time.sleep(0.3)
            with lock:
                q.put(count[0])
        else:
            srv.shutdown()
            return


class PyOsc:
    def __init__(self) -> None:
        self.port = free_port()
        self.q: Any = mp.Queue()
        self.proc = mp.Process(target=_pyosc_server, args=(self.port, self.q), daemon=True)
        self.proc.start()
        assert self.q.get(timeout=10) == "ready"
        self.base = 0

    def counts(self) -> tuple[int, int] | None:
        self.q.put("count")
        n: int | None = _answers.get(self.q, 30, "python-osc server count")
        return None if n is None else (n, n)

    def close(self) -> None:
        self.q.put("stop")
        self.proc.join(5)


# -- sender (its own process) ------------------------------------------------------
def _send(port: int, rate: float, seconds: float, shape: str, out: Any) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    addr = ("127.0.0.1", port)
    if shape == "plain":
        payloads = [encode_message(f"/nn/bench/grad_norm/{ly}", [0.001 * (i + 1)]) for i, ly in enumerate(LAYERS)]
        per = 1
    else:
        payloads = [
            encode_bundle([encode_message(f"/nn/bench/grad_norm/{ly}", [0.01 * (j + 1)]) for ly in LAYERS])
            for j in range(4)
        ]
        per = len(LAYERS)
    n_dgrams = int(rate * seconds / per)
    interval = per / rate
    t0 = time.perf_counter()
    sent = 0
    npay = len(payloads)
    sendto = s.sendto
    while sent < n_dgrams:
        # Pace in small batches: sleep when ahead, never fall behind by more than a batch.
        target = t0 + sent * interval
        now = time.perf_counter()
        if now < target:
            if target - now > 0.001:
                time.sleep(target - now - 0.0005)
            continue
        for _ in range(min(16, n_dgrams - sent)):
            sendto(payloads[sent % npay], addr)
            sent += 1
    out.put((sent * per, time.perf_counter() - t0))


def trial(receiver: Bridge | PyOsc, rate: float, seconds: float, shape: str) -> tuple[int, int, float] | None:
    """``(sent, accepted, achieved rate)``, or ``None`` when an answer did not come in time (reported)."""
    before = receiver.counts()
    if before is None:
        return None
    q: Any = mp.Queue()
    p = mp.Process(target=_send, args=(receiver.port, rate, seconds, shape, q))
    p.start()
    result = _answers.get(q, seconds * 10 + 30, "sender")
    p.join(10)
    if result is None:
        p.kill()
        return None
    sent, took = result
    time.sleep(0.3)
    after = receiver.counts()
    if after is None:
        return None
    return sent, after[1] - before[1], sent / took


def sustained(make: Any, shape: str, rates: list[float], seconds: float) -> tuple[float, list[str]]:
    best = 0.0
    lines = []
    for rate in rates:
        try:
            r = make()
        except RuntimeError as err:  # e.g. the bridge did not start in time on a busy machine
            lines.append(f"    asked {rate:>9,.0f}/s  not run: {err}")
            break
        try:
            res = trial(r, rate, seconds, shape)
        finally:
            r.close()
        if res is None:
            lines.append(f"    asked {rate:>9,.0f}/s  no answer in time: rate not counted, stopping here")
            break
        sent, got, actual = res
        lost = sent - got
        lines.append(f"    asked {rate:>9,.0f}/s  sent {actual:>9,.0f}/s  received {got:>9,}  lost {lost:>7,}")
        if actual < rate * 0.95:
            lines[-1] += "  (sender could not keep the rate)"
            break
        if lost == 0:
            best = actual
        else:
            break
    return best, lines


# -- latency -------------------------------------------------------------------------
JACK_PERIOD = 32  # frames at 48 kHz: 0.67 ms, the granularity at which JACK delivers MIDI


def _paced_sender(port: int, n: int, out: Any) -> None:
    """Send n messages at 1,000/s from its own process; report the send times (CLOCK_MONOTONIC)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sends = []
    t0 = time.perf_counter() + 0.1
    for i in range(n):
        target = t0 + i / 1000
        while time.perf_counter() < target - 0.0003:
            time.sleep(0.0001)
        while time.perf_counter() < target:
            pass
        sends.append(time.perf_counter())
        # Values alternate so that every message changes the CC: one MIDI event each.
        s.sendto(encode_message("/nn/lat/metric/seq", [float(i % 2 * 100 + (i // 2) % 27)]), ("127.0.0.1", port))
    out.put(sends)


def latency(seconds: float) -> tuple[float, float, int] | str:
    """``(p50 µs, p99 µs, events)``, or why it was not measured."""
    try:
        import rtmidi
    except ImportError:
        return "python-rtmidi missing"
    jackd = _jackrig.start_jackd(48_000, JACK_PERIOD)
    rt = jackd.realtime
    env = dict(os.environ)
    print(f"latency: private jackd, {'realtime' if rt else 'non-realtime'}, {JACK_PERIOD} frames at 48 kHz")
    try:
        arrivals: list[float] = []
        probe = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="latprobe")
        probe.open_virtual_port("in")
        probe.set_callback(lambda ev, data=None: arrivals.append(time.perf_counter()))
        cfg = Path(tempfile.mkdtemp()) / "lat.toml"
        # A CC whose value changes every message: every message is one MIDI event.
        cfg.write_text(
            '[[mappings]]\nmatch = "/nn/{run}/metric/seq"\ntarget = "cc"\nscale = "linear"\n'
            'range = [0, 127]\nvoices = "none"\n'
        )
        b = Bridge(["--config", str(cfg), "--midi-api", "jack", "--midi-port", "latprobe:in"], env=env, midi=True)
        deadline = time.monotonic() + 30
        while not ((st := b.status()) and st["outputs"]["midi"]["ok"]):
            if time.monotonic() > deadline:
                b.close()
                return "the bridge's MIDI output was not connected within 30 s"
            time.sleep(0.05)
        time.sleep(0.5)
        q: Any = mp.Queue()
        n = int(1000 * seconds)
        sender = mp.Process(target=_paced_sender, args=(b.port, n, q))
        sender.start()
        sends: list[float] | None = _answers.get(q, seconds + 60, "latency sender")
        sender.join(10)
        time.sleep(0.5)
        b.close()
        if sends is None:
            return f"the paced sender did not finish within {seconds + 60:g} s"
        probe.cancel_callback()
        probe.close_port()
        probe.delete()
        k = min(len(sends), len(arrivals))
        lat = (np.array(arrivals[:k]) - np.array(sends[:k])) * 1e6
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), k
    finally:
        jackd.stop(10)


# -- the fault detectors' cost (docs/alarms.md) ------------------------------------------------------
def detector_cost(steps: int = 2000) -> None:
    """Per accepted value: the mapping engine with the detectors on vs off (same events, same run), and the
    watch (detectors, hold-off, rate limit) alone. In process: the detectors run on the receive thread."""
    from dataclasses import replace

    from trainsound.bridge.alarms.watch import Watch
    from trainsound.bridge.config import default
    from trainsound.bridge.mapping.engine import Engine
    from trainsound.bridge.wire.protocol import parse_event

    rng = np.random.default_rng(0)
    events = []
    for s in range(steps):
        t = s * 0.01
        events.append(parse_event("/nn/r/step", (s, 0), t, b""))
        events.append(parse_event("/nn/r/loss", (2.0 * float(np.exp(0.1 * rng.standard_normal())),), t, b""))
        for layer in LAYERS:
            g = float(np.exp(0.25 * rng.standard_normal()))
            events.append(parse_event(f"/nn/r/grad_norm/{layer}", (g,), t, b""))
    on = default()
    off = replace(on, alarms=replace(on.alarms, enabled=False))

    def per_event(fn: Any) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for ev in events:
                fn(ev)
            best = min(best, time.perf_counter() - t0)
        return best / len(events) * 1e6

    us_off = per_event(Engine(off).map)
    us_on = per_event(Engine(on).map)
    us_watch = per_event(Watch(on.alarms).feed)
    print(f"detectors: {len(events):,} events (loss + 64 grad norms + step per step, {steps:,} steps), best of 3")
    print(f"  mapping engine, alarms off: {us_off:5.2f} µs/event")
    print(f"  mapping engine, alarms on:  {us_on:5.2f} µs/event   (+{us_on - us_off:.2f} µs, "
          f"{us_on / us_off:.2f}× the engine without them)")
    print(f"  the watch alone:            {us_watch:5.2f} µs/event\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each rate trial")
    ap.add_argument("--quick", action="store_true", help="fewer rate steps (a smoke run)")
    ap.add_argument("--detectors", action="store_true", help="only the fault detectors' cost (a few seconds)")
    args = ap.parse_args()
    detector_cost()
    if args.detectors:
        return 0
    plain_rates = [5_000, 10_000, 25_000, 50_000, 75_000, 100_000, 125_000, 150_000, 175_000, 200_000, 250_000]
    bundle_rates = [50_000, 100_000, 200_000, 250_000, 300_000, 350_000, 400_000, 600_000, 800_000]
    base_rates = [500, 1_000, 2_000, 4_000, 7_000, 10_000, 15_000, 25_000, 50_000]
    if args.quick:
        plain_rates, bundle_rates, base_rates = [10_000, 50_000], [200_000], [1_000, 2_000]
    print(
        f"machine: {os.cpu_count()} CPUs; loopback UDP; sender and receiver in separate processes; "
        f"{args.seconds:g} s per trial\n"
    )
    results = {}
    for label, make, shape, rates in [
        ("python-osc ThreadingOSCUDPServer, plain", PyOsc, "plain", base_rates),
        ("trainsound bridge, plain messages", Bridge, "plain", plain_rates),
        ("trainsound bridge, 64-message bundles (values/s)", Bridge, "bundle", bundle_rates),
    ]:
        print(label)
        best, lines = sustained(make, shape, rates, args.seconds)
        print("\n".join(lines))
        print(f"  → highest rate with 0 drops: {best:,.0f}/s\n")
        results[label] = best
    base = results["python-osc ThreadingOSCUDPServer, plain"] or 1.0
    plain = results["trainsound bridge, plain messages"]
    bundled = results["trainsound bridge, 64-message bundles (values/s)"]
    print(f"plain:   {plain:>9,.0f} msg/s    = {plain / base:5.1f}× python-osc   (target ≥ 50,000)")
    print(f"bundled: {bundled:>9,.0f} values/s = {bundled / base:5.1f}× python-osc   (target ≥ 200,000)")
    lat = latency(3.0 if args.quick else 5.0)
    if isinstance(lat, str):
        print(f"latency: not measured ({lat})")
    else:
        p50, p99, k = lat
        print(
            f"OSC in → MIDI out latency at 1,000 msg/s ({k} events, JACK MIDI probe, JACK period "
            f"{JACK_PERIOD} frames = {JACK_PERIOD / 48:.2f} ms included): p50 {p50:.0f} µs, p99 {p99:.0f} µs"
            "   (target p99 ≤ 1,000 µs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
