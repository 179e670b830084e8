"""The listening page's cost and latency, each measured in one run next to a baseline.

    .venv/bin/python bench/bench_web.py [--seconds 1.5] [--parts 123]

1. The feed on the hot path: a Pipeline fed grad-norm datagrams in-process, with and without the feed
   (the dict stores every event costs), this thread's CPU µs per datagram.
2. The receive loop with the page open: a bridge process without ``--web`` against one with ``--web`` and
   4 WebSocket clients taking every delta (what 4 open pages receive), interleaved, at fixed rates:
   messages lost and the bridge's CPU time per message (/proc, all its threads).
3. Latency OSC in → value in the page: headless Chromium (``?latency=1`` makes the page keep arrival
   times), 1,000 msg/s for a few seconds over 50 streams; each value is unique, so each arrival is
   matched to its send time (same clock, same machine). Target p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_bridge import Bridge, free_port, trial

from trainsound.bridge.config import default
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.web.feed import Feed
from trainsound.bridge.wire.osc import encode_message

ROOT = Path(__file__).resolve().parent.parent


# -- 1. the feed on the hot path ----------------------------------------------------------
def handle_cost(n: int = 200_000) -> float:
    """ns per ``Feed.handle`` call with one event and its mapped value (the feed's whole per-message cost)."""
    from trainsound.bridge.mapping.engine import Engine
    from trainsound.bridge.wire.protocol import parse_event

    eng, feed = Engine(default()), Feed(default())
    items = []
    for i in range(64):
        ev = parse_event(f"/nn/bench/grad_norm/layer{i}", (0.5,), 0.0, b"")
        items.append((ev, eng.map(ev)))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            feed.handle(*items[i & 63])
        best = min(best, (time.perf_counter() - t0) / n * 1e9)
    return best


def hot_path(n: int = 20_000, rounds: int = 30) -> tuple[float, float, float, float]:
    """µs of this thread's CPU per datagram through a Pipeline without and with the feed: min and median of
    ``rounds`` interleaved chunks (CPU time, not wall time: other jobs on the machine do not count)."""
    packets = [encode_message(f"/nn/bench/grad_norm/layer{i % 64}", [0.001 * (i % 977 + 1)]) for i in range(n)]
    pipes = {False: Pipeline(default(), []), True: Pipeline(default(), [Feed(default())])}
    times: dict[bool, list[float]] = {False: [], True: []}
    t = 0.0
    for _ in range(rounds):
        for with_feed, p in pipes.items():
            t0 = time.thread_time()
            for i, d in enumerate(packets):
                p.feed_datagram(d, t + i * 1e-4, None)
            times[with_feed].append((time.thread_time() - t0) / n * 1e6)
        t += n * 1e-4
    return min(times[False]), float(np.median(times[False])), min(times[True]), float(np.median(times[True]))


# -- 2. the receive loop with 4 clients ----------------------------------------------------
def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clients:
    """``n`` WebSocket clients (aiohttp) on a thread, counting the deltas they receive."""

    def __init__(self, url: str, n: int) -> None:
        self.url, self.n = url, n
        self.frames = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("web clients did not connect")

    async def _main(self) -> None:
        import aiohttp

        self.stop = asyncio.Event()
        origin = self.url.rsplit("/ws", 1)[0]
        async with aiohttp.ClientSession() as s:
            conns = [await s.ws_connect(self.url, headers={"Origin": origin}) for _ in range(self.n)]
            self.ready.set()
            tasks = [asyncio.create_task(self._read(ws)) for ws in conns]
            await self.stop.wait()
            for ws in conns:
                await ws.close()
            for t in tasks:
                t.cancel()

    async def _read(self, ws: Any) -> None:
        async for _ in ws:
            self.frames += 1

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(5)


def receive_loop(rates: list[int], seconds: float) -> list[str]:
    lines = []
    for rate in rates:
        for web in (False, True, False, True):
            wport = free_port()
            b = Bridge(["--web", f"127.0.0.1:{wport}"] if web else [])
            clients = Clients(f"http://127.0.0.1:{wport}/ws", 4) if web else None
            try:
                time.sleep(0.3)
                c0 = cpu_seconds(b.proc.pid)
                sent, got, actual = trial(b, rate, seconds, "plain")
                cpu = cpu_seconds(b.proc.pid) - c0
            finally:
                if clients is not None:
                    clients.close()
                b.close()
            frames = f", clients got {clients.frames} deltas" if clients is not None else ""
            lines.append(
                f"  {rate:>7,}/s {'web + 4 clients' if web else 'no web         '}: sent {actual:>8,.0f}/s "
                f"lost {sent - got:>6,}  bridge CPU {cpu / max(got, 1) * 1e6:5.2f} µs/msg{frames}"
            )
            print(lines[-1], flush=True)
    return lines


# -- 3. latency into the page --------------------------------------------------------------
def chrome() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for f in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--no-first-run",
              "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(f)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)


def latency(rate: float, seconds: float) -> tuple[float, float, float, int, int]:
    wport = free_port()
    b = Bridge(["--web", f"127.0.0.1:{wport}"])
    d = chrome()
    try:
        d.get(f"http://127.0.0.1:{wport}/?latency=1")
        t0 = time.time()
        while not d.execute_script("return window.trainsound.state.hellos") and time.time() - t0 < 10:
            time.sleep(0.05)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        n = int(rate * seconds)
        sent_at = np.zeros(n + 1)
        start = time.perf_counter()
        for seq in range(1, n + 1):
            ahead = start + seq / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)  # not a busy wait: on 2 cores it would take one from the bridge or the browser
            sent_at[seq] = time.time()
            s.sendto(encode_message(f"/nn/lat/grad_norm/l{seq % 50}", [float(seq)]), ("127.0.0.1", b.port))
        time.sleep(1.0)
        arrivals = d.execute_script("return window.trainsound.latency")
    finally:
        d.quit()
        b.close()
    lat = [a[2] - sent_at[int(a[1])] * 1000 for a in arrivals if isinstance(a[1], (int, float)) and 0 < a[1] <= n]
    ms = np.array(lat)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max()), len(ms), n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="length of each receive-loop trial")
    ap.add_argument("--parts", default="123", help="which parts to run, e.g. 3 for the latency alone")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, shared (load average {load:.1f} at start); loopback UDP\n")
    if "1" in args.parts:
        part1()
    if "2" in args.parts:
        print("2. receive loop, bridge process, plain messages (interleaved: no web / web + 4 clients)")
        receive_loop([30_000, 45_000], args.seconds)
        print()
    if "3" in args.parts:
        part3()
    return 0


def part1() -> None:
    b_min, b_med, f_min, f_med = hot_path()
    print(f"1. hot path, in-process, thread CPU per datagram (min / median of 30 interleaved chunks): "
          f"{b_min:.2f} / {b_med:.2f} µs without the feed, {f_min:.2f} / {f_med:.2f} µs with it "
          f"({f_med / b_med:.2f}×); Feed.handle alone: {handle_cost():.0f} ns per message\n")


def part3() -> None:
    p50, p99, worst, got, n = latency(1000.0, 5.0)
    print(f"3. OSC in → value in the page (headless Chromium), 1,000 msg/s over 50 streams: {got:,} of {n:,} values "
          "reached the page (the rest were replaced by a newer value of their stream within one poll of the web "
          f"thread); "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms   (target p99 ≤ 50 ms)")
    print(json.dumps({"latency_ms": [round(p50, 1), round(p99, 1)]}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    sys.exit(main())
