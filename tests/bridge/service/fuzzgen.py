"""Random and mutated OSC datagrams for fuzzing the running bridge (tests and bench/bench_fuzz.py).

Every kind of bad input the issue names: truncated, wrong type tags, huge blobs,
bad padding, nested bundles, far-future timetags, non-UTF-8 addresses, NaN/Inf,
plus bit flips and random bytes. Deterministic for a seed. Valid "marker"
messages from run :data:`MARKER_RUN` are interleaved by the caller to check
that real traffic is still mapped.
"""

from __future__ import annotations

import math
import random
import struct
import time
from collections import Counter
from collections.abc import Iterator

from trainsound.bridge.errors import OSCDecodeError
from trainsound.bridge.wire.osc import BUNDLE_TAG, encode_bundle, encode_message, unix_to_timetag
from trainsound.bridge.wire.protocol import ProtocolError, parse_event

MARKER_RUN = "zzcheck"
MAX_UDP = 65_507

_TEMPLATES = [
    encode_message("/nn/r1/loss", [0.5]),
    encode_message("/nn/r1/step", [3, 1]),
    encode_message("/nn/r2/grad_norm/fc1", [1.25]),
    encode_message("/nn/r2/weight/conv1", [0.0, 0.1, 0.4, 3.0, 0.001]),
    encode_message("/nn/r1/metric/accuracy", [0.9]),
    encode_message("/nn/r1/event", ["start"]),
    encode_message("/nn/r3/activation_spectrum/fc2", [struct.pack("<4f", 1, 2, 3, 4)]),
    encode_message("/nn/r3/loss", [float("nan")]),
    encode_message("/nn/r3/grad_norm/fc1", [float("inf")]),
]


def marker(i: int) -> tuple[bytes, float]:
    """The i-th marker message and its value (log-spaced so pitches vary)."""
    value = 10.0 ** ((i % 60) / 10.0 - 3.0)
    as_f32 = float(struct.unpack(">f", struct.pack(">f", value))[0])
    return encode_message(f"/nn/{MARKER_RUN}/grad_norm/l{i % 40}", [value]), as_f32


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 2:
            pos = rng.randrange(len(b) + 1)
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif b:
            b[rng.randrange(len(b))] = rng.choice(b"\x00,/#sifbTFNdhS\xff\xc0")
    return bytes(b)


def _nested(depth: int, inner: bytes, timetag: int = 1) -> bytes:
    for _ in range(depth):
        inner = encode_bundle([inner], timetag)
    return inner


def datagram(rng: random.Random, now: float | None = None) -> tuple[str, bytes]:
    """One fuzz datagram and the name of its generator."""
    now = time.time() if now is None else now
    kind = rng.randrange(13)
    t = rng.choice(_TEMPLATES)
    if kind == 0:
        return "truncated", t[: rng.randrange(1, len(t))]
    if kind == 1:
        tags = bytes(rng.choice(b"ifsbxyzqQ@!") for _ in range(rng.randint(1, 6)))
        head = encode_message("/nn/r1/loss", [])[:12]
        return "wrong_type_tags", head + b"," + tags + b"\x00" * (4 - (len(tags) + 1) % 4)
    if kind == 2:
        size = rng.choice([1 << 21, 1 << 30, -1, 0x7FFFFFFF, 60_000])
        body = b"\x00" * min(max(size, 0), 1000)
        return "huge_blob", b"/nn/r3/activation_spectrum/fc2\x00\x00,b\x00\x00" + struct.pack(">i", size) + body
    if kind == 3:
        return "bad_padding", t.replace(b"\x00", b"", 1) if rng.random() < 0.5 else t + b"\x00" * rng.randint(1, 3)
    if kind == 4:
        return "nested_bundles", _nested(rng.randint(1, 8), t)
    if kind == 5:
        ahead = rng.choice([3600.0 * 24 * 365, 1e6, 60.0, 0.2, -10.0])
        return "future_bundle", encode_bundle([t, rng.choice(_TEMPLATES)], unix_to_timetag(now + ahead))
    if kind == 6:
        bad = bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 12)))
        raw = b"/nn/" + bad + b"/loss"
        return "not_utf8", raw + b"\x00" * (4 - len(raw) % 4) + b",f\x00\x00" + struct.pack(">f", 1.0)
    if kind == 7:
        v = rng.choice([math.nan, math.inf, -math.inf, 3.4e38, -0.0])
        return "nonfinite", encode_message(f"/nn/r{rng.randrange(4)}/grad_norm/fc{rng.randrange(3)}", [v])
    if kind == 8:
        return "random_bytes", bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    if kind == 9:
        return "random_bundle", BUNDLE_TAG + bytes(rng.randrange(256) for _ in range(rng.randint(0, 48)))
    if kind == 10:
        name = b"a" * rng.choice([130, 1100, 8000])
        return "long_address", b"/nn/" + name + b"/loss\x00\x00\x00,f\x00\x00\x00\x00\x00\x00"
    if kind == 11:
        return "mutated_bundle", _mutate(rng, encode_bundle([t, rng.choice(_TEMPLATES)]))
    return "mutated", _mutate(rng, t)


def datagrams(seed: int, n: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for _ in range(n):
        kind, data = datagram(rng)
        yield kind, data[:MAX_UDP]


def expected_reasons(data: bytes, now: float, horizon: float) -> Counter[str]:
    """What the bridge must count for ``data``: drop reasons, ``accepted`` and ``control``, computed offline."""
    from trainsound.bridge.wire.osc import decode_packet

    out: Counter[str] = Counter()
    try:
        items = decode_packet(data)
    except OSCDecodeError as err:
        out[err.reason] += 1
        return out
    for _when, raw, (address, args) in items:
        if address.startswith("/trainsound/"):
            # Answered by the receive layer when alone in the datagram; inside a bundle, dropped.
            out["control" if data[:1] == b"/" else "control_in_bundle"] += 1
            continue
        try:
            parse_event(address, args, now, raw)
        except ProtocolError as err:
            out[err.reason] += 1
            continue
        out["accepted"] += 1
    return out
