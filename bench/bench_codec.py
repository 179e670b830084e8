"""The OSC codec per message: trainsound's struct codec next to python-osc, in one run.

    .venv/bin/python bench/bench_codec.py [--seconds 0.5]

Why the hot paths keep their own codec: the receive loop decodes every message, and the
OSC-out output encodes every mapped value on the receive thread. python-osc builds and
parses the one-off messages (``trainsound send``, ``trainsound status``), where the cost
does not matter. Each figure is the best of 5 timed rounds (µs per message), so a busy
moment of this shared machine shows as a slower round, not a wrong figure.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from trainsound.bridge.wire.osc import decode_message, encode_message

VALUE = ("/trainsound/value", ["run1", "fc1", 3, 0.5, 1.25, "grad_norm", "grad_norm_notes"])
GRAD = ("/nn/run1/grad_norm/features.0", [1.5])


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Best of 5 rounds of ``seconds / 5`` each, in µs per call."""
    best = float("inf")
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        deadline = t0 + seconds / 5
        while True:
            for _ in range(200):
                fn()
            n += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = min(best, (now - t0) / n * 1e6)
    return best


def pyosc_encode(address: str, args: list[object]) -> bytes:
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a)
    return bytes(b.build().dgram)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    a = ap.parse_args()
    rows = []
    for label, (address, args) in (("value message (7 args)", VALUE), ("grad-norm message", GRAD)):
        data = encode_message(address, args)
        assert pyosc_encode(address, args) == data, "the two encoders must agree byte for byte"
        enc_ts = per_call_us(lambda address=address, args=args: encode_message(address, args), a.seconds)
        enc_po = per_call_us(lambda address=address, args=args: pyosc_encode(address, args), a.seconds)
        dec_ts = per_call_us(lambda data=data: decode_message(data), a.seconds)
        dec_po = per_call_us(lambda data=data: OscMessage(data).params, a.seconds)
        rows.append((f"encode {label}", enc_ts, enc_po))
        rows.append((f"decode {label}", dec_ts, dec_po))
    print(f"{'':34s} {'trainsound µs':>14s} {'python-osc µs':>14s} {'ratio':>7s}")
    for name, ts, po in rows:
        print(f"{name:34s} {ts:14.2f} {po:14.2f} {po / ts:6.1f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
