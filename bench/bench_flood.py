"""Flood the running bridge at 10x its sustainable rate for 60 s
(the full version of tests/bridge/service/test_flood.py).

    .venv/bin/python bench/bench_flood.py [--sustainable RATE] [--factor 10] [--seconds 60]

Without --sustainable it first finds the highest paced rate the bridge takes with no kernel drop
(steps of 2 s). Prints: sustainable rate, flood rate asked and achieved, datagrams processed and
dropped (kernel) and counted by reason, RSS before/peak/after (the bound), status round-trip during
the flood (TCP, as `trainsound status` asks), and that mapping works afterwards. Loopback only.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "bridge" / "service")]

import _answers  # noqa: E402
from service_helpers import flood, rss_kib, write_config  # noqa: E402
from support import BridgeProc, free_udp_port  # noqa: E402

from trainsound.bridge.wire.osc import encode_bundle, encode_message  # noqa: E402

PACKETS = [
    encode_message("/nn/f/grad_norm/fc1", [0.5]),
    encode_message("/nn/f/loss", [0.25]),
    encode_message("/nn/f/weight/fc1", [0.0, 0.1, 0.4, 3.0, 0.001]),
    encode_bundle([encode_message("/nn/f/step", [1]), encode_message("/nn/f/grad_norm/fc2", [2.0])]),
    b"\xffnot osc",
]


def find_sustainable(port: int) -> float:
    rate, best = 5_000.0, 0.0
    while rate <= 400_000:
        st0 = _answers.status(port, 5.0, f"status before the {rate:,.0f}/s step")
        _, got = flood(port, 2.0, rate, PACKETS)
        time.sleep(0.3)
        st1 = _answers.status(port, 5.0, f"status after the {rate:,.0f}/s step")
        if st0 is None or st1 is None:  # too busy to answer: past what it sustains
            break
        if int(st1["kernel_drops"]) > int(st0["kernel_drops"]) or got < 0.95 * rate:
            break
        best, rate = rate, rate * 1.5
    return best


def c_flooder(tmp: Path) -> Path | None:
    """Compile bench/flooder.c (sendmmsg) if a C compiler is here; None otherwise."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = tmp / "flooder"
    r = subprocess.run([cc, "-O2", "-o", str(exe), str(ROOT / "bench" / "flooder.c")], capture_output=True, text=True)
    return exe if r.returncode == 0 else None


def flood_c(exe: Path, tmp: Path, n: int, port: int, seconds: float, rate: float) -> tuple[int, float]:
    """Flood from ``n`` C sender processes, each at ``rate / n``."""
    pk = tmp / "packets.bin"
    pk.write_bytes(b"".join(struct.pack(">I", len(p)) + p for p in PACKETS))
    procs = [
        subprocess.Popen([str(exe), str(port), str(rate / n), str(seconds), str(pk)], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    sent, achieved = 0, 0.0
    for p in procs:
        out, _ = p.communicate(timeout=seconds * 4 + 60)
        k, took = out.split()
        sent += int(k)
        achieved += int(k) / float(took)
    return sent, achieved


def _sender(port: int, seconds: float, rate: float, out: Any) -> None:
    out.put(flood(port, seconds, rate, PACKETS))


def flood_from(n: int, port: int, seconds: float, rate: float) -> tuple[int, float]:
    """Flood from ``n`` sender processes (one Python sender tops out near 140k datagrams/s here)."""
    q: Any = mp.Queue()
    procs = [mp.Process(target=_sender, args=(port, seconds, rate / n, q)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results), sum(r[1] for r in results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sustainable", type=float, help="msg/s the bridge takes with no loss (default: measure)")
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--senders", type=int, default=2, help="sender processes (C with a compiler, else Python)")
    a = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp) / "b.toml", stats_interval=0)
        b = BridgeProc(["--no-midi", "--config", str(cfg)], free_udp_port())
        exe = c_flooder(Path(tmp))
        sustainable = a.sustainable or find_sustainable(b.port)
        target = sustainable * a.factor
        rss0 = rss_kib(b.proc.pid)
        base = _answers.status(b.port, 10.0, "status before the flood")
        if base is None:
            b.stop()
            return 1
        lat: list[float] = []
        unanswered = [0]
        peak = [rss0]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                took, st = _answers.timed_status(b.port, 5.0, "status during the flood")
                if st is None:
                    unanswered[0] += 1
                else:
                    lat.append(took)
                peak.append(rss_kib(b.proc.pid))
                time.sleep(0.5)

        w = threading.Thread(target=watch)
        w.start()
        try:
            if exe is not None:
                sent, achieved = flood_c(exe, Path(tmp), a.senders, b.port, a.seconds, target)
            else:
                sent, achieved = flood_from(a.senders, b.port, a.seconds, target)
        finally:
            done.set()
            w.join()
        time.sleep(0.5)
        after = _answers.status(b.port, 30.0, "status after the flood")
        rss1 = rss_kib(b.proc.pid)
        b.send("/nn/after/grad_norm/fc1", 1.0)
        time.sleep(0.2)
        final = _answers.status(b.port, 30.0, "status after one more message")
        rc, _ = b.stop()
        lat.sort()
        lat = lat or [float("nan")]
        print(f"bench_flood: sustainable {sustainable:,.0f} msg/s; flood asked {target:,.0f}/s for {a.seconds:g} s")
        how = f"{a.senders} {'C (sendmmsg)' if exe is not None else 'Python'} sender processes"
        ratio = achieved / sustainable
        print(f"  sent {sent:,} datagrams, achieved {achieved:,.0f}/s = {ratio:.1f}x sustainable ({how})")
        if after is not None:
            processed = int(after["datagrams"]) - int(base["datagrams"])
            kdrops = int(after["kernel_drops"]) - int(base["kernel_drops"])
            print(
                f"  processed by the bridge {processed:,} ({processed / a.seconds:,.0f}/s); "
                f"dropped in the kernel {kdrops:,}"
            )
            print(f"  counted drops by reason: {after['dropped']}; noted: {after['noted']}")
        print(f"  RSS KiB: before {rss0:,}, peak {max(peak):,}, after {rss1:,} (growth {max(peak) - rss0:+,})")
        print(
            f"  status during flood: {len(lat)} answered, {unanswered[0]} not within 5 s, "
            f"round-trip median {lat[len(lat) // 2] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms"
        )
        mapped_after = -1 if after is None or final is None else final["mapping"]["mapped"] - after["mapping"]["mapped"]
        print(f"  after the flood: mapped {mapped_after} of 1 new message (-1: not asked in time); "
              f"exit code on SIGTERM {rc}")
    return 0 if rc == 0 and mapped_after == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
