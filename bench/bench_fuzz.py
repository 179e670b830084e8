"""Fuzz the running bridge with 1,000,000 random and mutated datagrams
(the full version of tests/bridge/service/test_fuzz.py).

    .venv/bin/python bench/bench_fuzz.py [--count 1000000] [--rate 12000] [--seed 7]

Prints: datagrams sent and counted, drops by reason (checked against an offline decode of the same
datagrams), markers recorded intact, RSS at 10 % and at the end, crashes (must be 0). Loopback only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "bridge" / "service")]

import _answers  # noqa: E402
import fuzzgen  # noqa: E402
from service_helpers import rss_kib, send_paced, write_config  # noqa: E402
from support import BridgeProc, free_udp_port  # noqa: E402

from trainsound.bridge.wire.session import iter_messages  # noqa: E402

MARKER_EVERY = 100


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=12_000.0, help="datagrams/s (paced, so none is lost in the kernel)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp) / "b.toml", max_runs=100_000, max_voices=100_000, stats_interval=0)
        session = Path(tmp) / "fuzz.tsr"
        b = BridgeProc(["--no-midi", "--config", str(cfg), "--record", str(session)], free_udp_port())
        base = _answers.status(b.port, 10.0, "status before the fuzz")
        if base is None:
            b.stop()
            return 1
        expected: Counter[str] = Counter()
        markers: list[float] = []
        rss: list[int] = [rss_kib(b.proc.pid)]
        tenth = max(1, a.count // 10)

        def packets():  # type: ignore[no-untyped-def]
            for i, (_kind, data) in enumerate(fuzzgen.datagrams(a.seed, a.count)):
                if i % MARKER_EVERY == 0:
                    raw, value = fuzzgen.marker(len(markers))
                    markers.append(value)
                    expected["accepted"] += 1
                    yield raw
                if i % tenth == 0 and i:
                    rss.append(rss_kib(b.proc.pid))
                expected.update(fuzzgen.expected_reasons(data, time.time(), 10.0))
                yield data

        t0 = time.time()
        sent = send_paced(b.sock, ("127.0.0.1", b.port), packets(), a.rate)
        elapsed = time.time() - t0
        time.sleep(1.0)
        rss.append(rss_kib(b.proc.pid))
        st = _answers.status(b.port, 30.0, "status after the fuzz")
        alive = b.proc.poll() is None
        rc, _err = b.stop(signal.SIGTERM)
        if st is None:  # the bridge's own counters are the figures: without them, only alive/exit code
            print(f"bench_fuzz: {sent:,} datagrams in {elapsed:.1f} s; bridge alive after: {alive}; exit code {rc}")
            return 1
        got = Counter(st["dropped"]) - Counter(base["dropped"])  # type: ignore[arg-type]
        want = Counter({k: v for k, v in expected.items() if k not in ("accepted", "control")})
        recorded = [
            float(args[0])  # type: ignore[arg-type]
            for _, address, args in iter_messages(session)
            if address.startswith(f"/nn/{fuzzgen.MARKER_RUN}/")
        ]
        counted = int(st["datagrams"]) - int(base["datagrams"]) - 1  # type: ignore[call-overload]
        print(f"bench_fuzz: {sent:,} datagrams ({a.count:,} fuzz + {len(markers):,} valid markers) in {elapsed:.1f} s")
        print(f"  bridge alive after: {alive}; exit code on SIGTERM: {rc}; crashes: {0 if alive and rc == 0 else 1}")
        print(f"  counted by the bridge: {counted:,}; lost in the kernel: {st['kernel_drops']}")
        print(f"  dropped by reason (bridge == offline decode: {got == want}):")
        for reason, n in sorted(got.items(), key=lambda kv: -kv[1]):
            print(f"    {reason:<18} {n:>9,}")
        print(f"  accepted: {int(st['accepted']) - int(base['accepted']):,} (offline: {expected['accepted']:,})")
        print(
            f"  valid markers recorded intact and in order: {recorded[-len(markers) :] == markers} ({len(markers):,})"
        )
        print(f"  RSS KiB at start, each 10 %, end: {rss}")
        print(f"  RSS growth after the first 10 %: {rss[-1] - rss[1]:+,} KiB")
    return 0 if alive and rc == 0 and got == want else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
