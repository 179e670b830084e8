"""OSCQuery's cost and latency against the real bridge (docs/oscquery.md).

    .venv/bin/python bench/bench_oscquery.py [--runs 64] [--layers 50]

1. ``GET`` times on a large namespace: ``runs`` runs with ``layers`` layers each (grad_norm and weight:
   2·layers + 2 methods a run), median of repeated requests: the whole tree, one run, one value, HOST_INFO.
2. LISTEN latency, OSC in → binary frame out: one WebSocket client listens to one address; 200 unique
   values a second for 5 s are sent to the bridge's UDP port, each arrival matched to its send time
   (same clock, same machine). The pump looks 50 times a second and sends the latest value of each poll:
   of 200 values a second about 50 arrive (by design, docs/oscquery.md), each within a poll (≤ 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import BridgeProc, free_udp_port
from webrig import free_tcp_port

from trainsound.bridge.wire.osc import decode_message, encode_message


def get_ms(port: int, path: str, n: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        size = len(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read())
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, size


async def listen_latency(b: BridgeProc, port: int, rate: float, seconds: float) -> np.ndarray:
    sent: dict[float, float] = {}
    got: dict[float, float] = {}
    async with aiohttp.ClientSession() as s, s.ws_connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/nn/lat/loss"}))
        await asyncio.sleep(0.3)

        async def reader() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    got[decode_message(msg.data)[1][0]] = time.perf_counter()  # type: ignore[index]

        task = asyncio.create_task(reader())
        n = int(rate * seconds)
        t0 = time.perf_counter()
        for i in range(n):
            value = float(np.float32(1.0 + i / 1024))
            while time.perf_counter() < t0 + i / rate:
                await asyncio.sleep(0.0005)
            sent[value] = time.perf_counter()
            b.send_raw(encode_message("/nn/lat/loss", [value]))
        await asyncio.sleep(0.5)
        task.cancel()
    lat = [got[v] - t for v, t in sent.items() if v in got]
    print(f"LISTEN: {len(lat)}/{len(sent)} values arrived")
    return np.array(lat) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=64)
    ap.add_argument("--layers", type=int, default=50)
    args = ap.parse_args()
    port = free_tcp_port()
    b = BridgeProc(["--no-midi", "--stats-interval", "0", "--oscquery", str(port)], free_udp_port())
    try:
        for r in range(args.runs):
            b.send_raw(encode_message(f"/nn/run{r}/step", [1]))
            b.send_raw(encode_message(f"/nn/run{r}/loss", [0.5]))
            for layer in range(args.layers):
                b.send_raw(encode_message(f"/nn/run{r}/grad_norm/layer{layer}", [0.1]))
                b.send_raw(encode_message(f"/nn/run{r}/weight/layer{layer}", [0.0, 0.1, 0.2, 0.3, 0.4]))
            time.sleep(0.01)  # a UDP socket buffer is finite
        time.sleep(1.0)
        print(f"namespace: {args.runs} runs x {2 * args.layers + 2} methods = {args.runs * (2 * args.layers + 2)}")
        for path, n in (("/", 10), ("/nn/run3", 30), ("/nn/run3/loss?VALUE", 30), ("/?HOST_INFO", 30)):
            ms, size = get_ms(port, path, n)
            print(f"GET {path}: median {ms:.1f} ms, {size:,} bytes")
        lat = asyncio.run(listen_latency(b, port, 200.0, 5.0))
        print(f"LISTEN latency OSC in -> frame out: p50 {np.percentile(lat, 50):.1f} ms, "
              f"p99 {np.percentile(lat, 99):.1f} ms, max {lat.max():.1f} ms")
    finally:
        b.stop()


if __name__ == "__main__":
    main()
