"""The bridge's CPU per value against python-osc merely parsing the same datagrams, in one run (issue 23).

    .venv/bin/python bench/bench_hotpath.py [--steps 3000] [--seconds 8] [--no-live] [--idle 8]

Two shapes of real training traffic, one bundle per step:
- ``gpt2``: step, loss and 62 layer grad norms named as a 6-block GPT-2's (``transformer.h.{i}.…``);
- ``cnn``: the seed CNN's: step, loss, lr and per layer (10) a grad norm and the five weight statistics.

In process (``time.process_time``; the same datagrams): python-osc's ``OscBundle`` parse, then the bridge's
pipeline with voice groups, the fault detectors, the web page's feed and the session recording on, and the
share of each feature (each added in turn to the one before). Live (the issue's measurement): a real
``trainsound bridge --no-midi --record F --web PORT`` process fed by a sender process at 38,400 values/s; its
CPU time from /proc over the sending, per value received, against python-osc's parse of the same datagrams
measured in this process in the same run; then an idle bridge's CPU (what it pays whatever the rate). A
bridge that does not answer is reported, not a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _answers
from pythonosc.osc_bundle import OscBundle

from trainsound.bridge.config import Config, default
from trainsound.bridge.outputs.base import Output
from trainsound.bridge.outputs.record import RecordOut
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.web.feed import Feed
from trainsound.bridge.wire.osc import encode_bundle, encode_message

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj", "attn.bias", "ln_1.bias",
          "ln_2.bias", "mlp.c_fc.bias")
_BLOCKS = [f"transformer.h.{i}.{p}" for i in range(6) for p in _BLOCK]
GPT2_LAYERS = [*["transformer.wte", "transformer.wpe", *_BLOCKS][:61], "transformer.ln_f"]
CNN_LAYERS = [f"features.{i}" for i in (0, 3, 6, 8, 10)] + [f"classifier.{i}" for i in (1, 4, 6)] + ["fc1", "fc2"]


def gpt2_bundle(step: int) -> bytes:
    loss = 6.2 * (1 + step / 50) ** -0.5
    msgs = [encode_message("/nn/gpt2/step", [step]), encode_message("/nn/gpt2/loss", [loss])]
    msgs += [encode_message(f"/nn/gpt2/grad_norm/{n}", [0.5 + 0.01 * ((step + i) % 7)])
             for i, n in enumerate(GPT2_LAYERS)]
    return encode_bundle(msgs)


def cnn_bundle(step: int) -> bytes:
    msgs = [encode_message("/nn/cnn/step", [step]), encode_message("/nn/cnn/loss", [2.3 * 0.995**step]),
            encode_message("/nn/cnn/metric/lr", [0.01])]
    for i, n in enumerate(CNN_LAYERS):
        w = 0.01 * ((step + i) % 5)
        msgs.append(encode_message(f"/nn/cnn/grad_norm/{n}", [0.2 + w]))
        msgs.append(encode_message(f"/nn/cnn/weight/{n}", [0.0, 0.05 + w, 0.3, 4.0 + w, 1e-3]))
    return encode_bundle(msgs)


SHAPES: dict[str, Callable[[int], bytes]] = {"gpt2": gpt2_bundle, "cnn": cnn_bundle}


def values_in(datagram: bytes) -> int:
    return len(OscBundle(datagram)._contents)


def pyosc_us(datagrams: list[bytes], values: int) -> float:
    """CPU µs per value for python-osc to parse the datagrams (the better of three passes)."""
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        for d in datagrams:
            OscBundle(d)
        best = min(best, time.process_time() - t)
    return best / values * 1e6


def pipeline_us(datagrams: list[bytes], values: int, cfg: Config, outputs: Callable[[], list[Output]]) -> float:
    """CPU µs per value for a fresh pipeline to take the datagrams (the better of three passes)."""
    best = float("inf")
    for _ in range(3):
        p = Pipeline(cfg, outputs())
        now = 1.8e9
        t = time.process_time()
        for i, d in enumerate(datagrams):
            p.feed_datagram(d, now + i * 0.01)
            if i % 4 == 0:
                p.tick(now + i * 0.01)
        best = min(best, time.process_time() - t)
        p.close()
    return best / values * 1e6


class PageFeed(Feed):
    """The feed as ``--web`` runs it: journaled, and its journal taken as the page's thread takes it (here at
    each tick, every 4th datagram, so its cost counts in this thread's CPU)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.journaled = hasattr(self, "journal")  # not in a checkout before it (a same-sitting comparison)
        if self.journaled:
            self.journal()

    def tick(self, now: float) -> None:
        super().tick(now)
        if self.journaled:
            self.changed()


def in_process(shape: str, steps: int, folder: Path) -> None:
    datagrams = [SHAPES[shape](s) for s in range(steps)]
    values = sum(values_in(d) for d in datagrams)
    base = pyosc_us(datagrams, values)
    full = default()
    bare = dataclasses.replace(full, mappings=(), alarms=dataclasses.replace(full.alarms, enabled=False))
    no_alarms = dataclasses.replace(full, alarms=dataclasses.replace(full.alarms, enabled=False))
    rec = folder / f"{shape}.tsr"

    def recording() -> list[Output]:
        return [RecordOut(full, path=str(rec), never_overwrite=False)]

    stages: list[tuple[str, float]] = [
        ("decode, validate, count", pipeline_us(datagrams, values, bare, list)),
        ("+ mapping rules, voice groups", pipeline_us(datagrams, values, no_alarms, list)),
        ("+ fault detectors", pipeline_us(datagrams, values, full, list)),
        ("+ session recording", pipeline_us(datagrams, values, full, recording)),
        ("+ web feed", pipeline_us(datagrams, values, full, lambda: [*recording(), PageFeed(full)])),
    ]
    total = stages[-1][1]
    print(f"\n{shape}: {len(datagrams)} bundles, {values} values ({values // len(datagrams)} per bundle), in process")
    print(f"  python-osc OscBundle parse      {base:6.2f} µs/value")
    prev = 0.0
    for label, us in stages:
        print(f"  {label:31s} {us:6.2f} µs/value   (share {us - prev:+5.2f})")
        prev = us
    print(f"  bridge pipeline, everything on  {total:6.2f} µs/value = {total / base:.2f}× python-osc's parse")


def _sender(port: int, datagrams: list[bytes], rate: float, seconds: float, q: Any) -> None:
    """Send ``datagrams`` round-robin at ``rate`` datagrams/s for ``seconds``; report how many were sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    start = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            sock.sendto(datagrams[sent % len(datagrams)], ("127.0.0.1", port))
            sent += 1
        time.sleep(0.002)
    q.put(sent)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free(kind: int) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


@contextlib.contextmanager
def _bridge(record: Path, web: bool) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A ``trainsound bridge --no-midi --record F [--web PORT]`` process and its UDP port; stopped on exit
    (killed if SIGTERM is not enough within 20 s)."""
    port = _free(socket.SOCK_DGRAM)
    extra = ["--web", f"127.0.0.1:{_free(socket.SOCK_STREAM)}"] if web else []
    proc = subprocess.Popen([sys.executable, "-m", "trainsound.bridge", "-q", "bridge", "--no-midi",
                             "--listen", f"127.0.0.1:{port}", "--record", str(record), "--stats-interval", "0",
                             *extra], stderr=subprocess.PIPE, text=True)
    try:
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def live(shape: str, seconds: float, folder: Path, rate_values: float = 38_400.0) -> None:
    datagrams = [SHAPES[shape](s) for s in range(600)]
    per = values_in(datagrams[0])
    with _bridge(folder / f"live-{shape}.tsr", web=True) as (proc, port):
        if _answers.status(port, 20.0) is None:
            print(f"\n{shape} live: the bridge did not answer within 20 s; skipped")
            return
        before = _answers.status(port, 10.0)
        q: Any = mp.Queue()
        sender = mp.Process(target=_sender, args=(port, datagrams, rate_values / per, seconds, q))
        c0 = _cpu(proc.pid)
        sender.start()
        sent = q.get(timeout=seconds + 30)
        sender.join()
        time.sleep(0.5)  # the last datagrams drain
        c1 = _cpu(proc.pid)
        after = _answers.status(port, 10.0)
    if before is None or after is None:
        print(f"\n{shape} live: the bridge did not answer its status; no figure")
        return
    got = after["received"] - before["received"]
    base = pyosc_us(datagrams * 5, per * len(datagrams) * 5)
    us = (c1 - c0) / max(got, 1) * 1e6
    print(f"\n{shape} live: {sent} bundles sent at {rate_values:,.0f} values/s for {seconds:g} s; "
          f"the bridge received {got:,} of {sent * per:,} values ({after['accepted'] - before['accepted']:,} accepted)")
    print(f"  bridge process CPU (/proc)      {us:6.2f} µs/value (receive loop, ticks, web server thread included)")
    print(f"  python-osc OscBundle parse      {base:6.2f} µs/value (in this process, same datagrams)")
    print(f"  ratio                           {us / base:6.2f}× python-osc's parse (target ≤ 1.0)")


def idle(seconds: float, folder: Path) -> None:
    """An idle bridge's CPU (no traffic): what it pays whatever the rate (ticks, the web server's thread)."""
    print(f"\nidle bridge, {seconds:g} s each (CPU of the process, /proc)")
    for label, web in (("--no-midi --record", False), ("--no-midi --record --web", True)):
        with _bridge(folder / f"idle-{web}.tsr", web) as (proc, port):
            if _answers.status(port, 20.0) is None:
                print(f"  {label}: the bridge did not answer within 20 s; skipped")
                continue
            time.sleep(1.0)  # past the start's own work
            c0, t0 = _cpu(proc.pid), time.monotonic()
            time.sleep(seconds)
            share = (_cpu(proc.pid) - c0) / (time.monotonic() - t0)
        print(f"  {label:31s} {100 * share:5.1f} % of a core")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000, help="bundles per in-process measurement")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of live sending per shape")
    ap.add_argument("--no-live", action="store_true", help="only the in-process figures")
    ap.add_argument("--idle", type=float, default=8.0, metavar="SECONDS", help="idle CPU per set-up (0: skip)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; CPU time per value (lower is better)")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in SHAPES:
            in_process(shape, args.steps, Path(tmp))
        if not args.no_live:
            for shape in SHAPES:
                live(shape, args.seconds, Path(tmp))
            if args.idle > 0:
                idle(args.idle, Path(tmp))


if __name__ == "__main__":
    main()
