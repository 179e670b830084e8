"""Does the pyo engine keep up with 10,000 mapped values/s without audio dropouts?

Runs a private jackd (dummy backend, 48 kHz, 256 frames), the ``pyo`` output
playing a patch on it, and a JACK client that counts xruns and records pyo's
output (in a process of its own: a Python JACK callback next to a busy thread
would cause the xruns it counts). Two phases in one run:

- ``idle``: the patch sounds (one value sent) but nothing more is fed — the baseline;
- ``load``: ``--rate`` telemetry messages/s (default 10,000) go through the real
  :class:`~trainsound.bridge.pipeline.Pipeline` (decode → protocol → mapping
  engine → ``PyoOut.handle``) from one thread, as the daemon's receive loop
  does, with a mapping rule that has no rate limit, so each message is one
  mapped value.

Reported per phase: values fed/s, mapped values/s, patch hook calls/s (after
coalescing), JACK xruns, silent 256-frame blocks in the recording (a dropout
shows as a gap), and the deepest the output's queue got.

    .venv/bin/python bench/bench_pyo.py [--seconds 60] [--baseline-seconds 10] [--patch grad_chord]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import threading
import time
import uuid
from typing import Any

import _answers
import _jackrig

BLOCK = 256
RATE = 48_000


def start_jackd() -> tuple[_jackrig.JackServer, str]:
    jack = _jackrig.start_jackd(RATE, BLOCK)
    print(f"bench_pyo: jackd {'realtime (SCHED_FIFO)' if jack.realtime else 'non-realtime'}")
    return jack, jack.name


def _monitor_main(conn: Any, src: str) -> None:
    """Child process: a JACK client counting xruns and silent blocks of ``src``.

    Its own process because a JACK-Client process callback is Python and takes the
    GIL every block: next to the busy feeding thread it would cause the very xruns
    it is meant to count.
    """
    import jack

    client = jack.Client(f"bench_mon_{uuid.uuid4().hex[:6]}", no_start_server=True)
    port = client.inports.register("in_1")
    state = {"xruns": 0, "blocks": 0, "silent": 0}

    def process(n: int) -> None:
        state["blocks"] += 1
        if not port.get_array().any():
            state["silent"] += 1

    def xrun(delay: float) -> None:
        state["xruns"] += 1

    client.set_xrun_callback(xrun)
    client.set_process_callback(process)
    client.activate()
    t0 = time.time()
    while not client.get_ports(src):
        if time.time() - t0 > 10:
            conn.send(("error", f"JACK port {src} never appeared"))
            return
        time.sleep(0.01)
    client.connect(src, port)
    conn.send(("ready",))
    while conn.recv() == "snap":
        conn.send(dict(state))
    client.deactivate()
    client.close()


class Monitor:
    """Handle on the monitor process: ``snap()`` → counters so far."""

    def __init__(self, src: str) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_monitor_main, args=(child, src), daemon=True)
        self.proc.start()
        msg = _answers.recv(self.conn, 30, "JACK monitor start")
        if msg is None or msg[0] != "ready":
            self.close()
            sys.exit(f"bench_pyo: {'the JACK monitor did not start within 30 s' if msg is None else msg[1]}")

    def snap(self) -> dict[str, int]:
        """Counters so far; zeros (and a printed line) if the monitor does not answer within 10 s."""
        self.conn.send("snap")
        result: dict[str, int] | None = _answers.recv(self.conn, 10, "JACK monitor counters")
        return result if result is not None else {"xruns": 0, "blocks": 0, "silent": 0, "unanswered": 1}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("close")
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def feed(pipe: Any, rate: int, seconds: float, layers: int, stop: threading.Event) -> int:
    """Paced like a busy receive loop: batches every 10 ms; returns messages fed."""
    from trainsound.bridge.wire.osc import encode_message

    rnd = random.Random(1)
    # Pre-encoded messages with varied values: every one maps to a new CC code (no 'unchanged' skips).
    pool = [encode_message(f"/nn/bench/grad_norm/layer{i % layers}", [10 ** rnd.uniform(-4, 2)]) for i in range(20_000)]
    sent, t0, k = 0, time.perf_counter(), 0
    while not stop.is_set():
        now = time.perf_counter()
        if now - t0 >= seconds:
            break
        due = int((now - t0) * rate)
        while sent < due:
            pipe.feed_message(time.time(), pool[k])
            k = (k + 1) % len(pool)
            sent += 1
        time.sleep(0.01)
    return sent


def phase(name: str, seconds: float, rate: int, pipe: Any, out: Any, mon: Monitor, layers: int) -> dict[str, Any]:
    mapped0, calls0, m0 = pipe.engine.counters.mapped, out.coalescer.calls, mon.snap()
    depth = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.005):
            depth[0] = max(depth[0], len(out.queue))

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    t0 = time.perf_counter()
    fed = feed(pipe, rate, seconds, layers, stop) if rate else (time.sleep(seconds) or 0)
    dt = time.perf_counter() - t0
    stop.set()
    w.join()
    m1 = mon.snap()
    return {
        "phase": name,
        "fed/s": fed / dt,
        "mapped/s": (pipe.engine.counters.mapped - mapped0) / dt,
        "calls/s": (out.coalescer.calls - calls0) / dt,
        "xruns": m1["xruns"] - m0["xruns"],
        "silent": m1["silent"] - m0["silent"],
        "blocks": m1["blocks"] - m0["blocks"],
        "queue_max": depth[0],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the load phase (default 60)")
    ap.add_argument("--baseline-seconds", type=float, default=10.0, help="length of the idle phase (default 10)")
    ap.add_argument("--rate", type=int, default=10_000, help="telemetry messages per second (default 10000)")
    ap.add_argument("--layers", type=int, default=64, help="distinct layers in the stream (default 64)")
    ap.add_argument("--patch", default="grad_chord", help="pyo patch (default grad_chord)")
    a = ap.parse_args(argv)

    jackd, _ = start_jackd()
    out = mon = None
    try:
        from trainsound.bridge.config import from_dict
        from trainsound.bridge.outputs.pyo import PyoOut
        from trainsound.bridge.pipeline import Pipeline

        rule = {"match": "/nn/{run}/grad_norm/{layer}", "target": "cc", "scale": "log", "range": [1e-4, 1e2]}
        cfg = from_dict({"mappings": [rule]})
        jname = f"bench_pyo_{uuid.uuid4().hex[:6]}"
        out = PyoOut(cfg, patch=a.patch, audio="jack", jack_name=jname, jack_autoconnect=False)
        pipe = Pipeline(cfg, [out])
        mon = Monitor(f"{jname}:output_1")
        from trainsound.bridge.wire.osc import encode_message

        # One value so the patch sounds in the idle phase too (a gap then means a dropout, not silence).
        pipe.feed_message(time.time(), encode_message("/nn/bench/grad_norm/layer0", [0.1]))
        time.sleep(0.5)
        rows = [
            phase("idle", a.baseline_seconds, 0, pipe, out, mon, a.layers),
            phase("load", a.seconds, a.rate, pipe, out, mon, a.layers),
        ]
        health = out.health()
    finally:
        if mon is not None:
            mon.close()
        if out is not None:
            out.close()
        jackd.stop(10)

    py = sys.version.split()[0]
    print(f"bench_pyo: patch {a.patch}, jackd dummy {RATE} Hz / {BLOCK} frames, {a.layers} layers, python {py}")
    print(
        f"{'phase':<6} {'secs':>6} {'values fed/s':>13} {'mapped/s':>9} {'patch calls/s':>14} "
        f"{'xruns':>6} {'silent blocks':>14} {'queue max':>10}"
    )
    for r, secs in zip(rows, (a.baseline_seconds, a.seconds), strict=True):
        print(
            f"{r['phase']:<6} {secs:>6.0f} {r['fed/s']:>13,.0f} {r['mapped/s']:>9,.0f} {r['calls/s']:>14,.0f} "
            f"{r['xruns']:>6} {r['silent']:>6} / {r['blocks']:<6} {r['queue_max']:>10}"
        )
    print(f"pyo output health: dropped={health['dropped']} failed={health['failed']}")


if __name__ == "__main__":
    main()
