"""OSC decoding: the fast shapes, the general decoder, and a corpus of malformed datagrams."""

from __future__ import annotations

import math
import struct

import pytest
from corpus import MALFORMED

from trainsound.bridge.errors import OSCDecodeError
from trainsound.bridge.wire.osc import (
    IMMEDIATELY,
    decode_message,
    decode_packet,
    encode_bundle,
    encode_message,
    timetag_to_unix,
    unix_to_timetag,
)


@pytest.mark.parametrize(
    "args",
    [[0.5], [3], [120, 2], [0.1, 0.2, 0.3, 0.4, 0.5], ["nan"], [b"\x00\x00\x80?"], [1, 2.5, "x", b"ab"], []],
)
def test_roundtrip(args: list[object]) -> None:
    address, out = decode_message(encode_message("/nn/run/grad_norm/fc1", args))  # type: ignore[arg-type]
    assert address == "/nn/run/grad_norm/fc1"
    assert len(out) == len(args)
    for a, b in zip(args, out, strict=True):
        if isinstance(a, float):
            assert b == pytest.approx(a, rel=1e-6)
        else:
            assert a == b


def test_raw_fast_path_bytes() -> None:
    # /nn/r/loss ,f 1.0 written out by hand, as a client on another platform would send it.
    raw = b"/nn/r/loss\x00\x00,f\x00\x00\x3f\x80\x00\x00"
    assert decode_message(raw) == ("/nn/r/loss", (1.0,))


def test_nan_and_inf_decode_as_floats() -> None:
    _, (v,) = decode_message(b"/nn/r/loss\x00\x00,f\x00\x00" + struct.pack(">f", math.nan))
    assert math.isnan(v)  # type: ignore[arg-type]
    _, (w,) = decode_message(b"/nn/r/loss\x00\x00,f\x00\x00" + struct.pack(">f", math.inf))
    assert w == math.inf


def test_other_type_tags() -> None:
    raw = encode_message("/x", [True, False, None])
    assert decode_message(raw) == ("/x", (True, False, None))
    d = b"/x\x00\x00,dh\x00" + struct.pack(">dq", 0.25, 7)
    assert decode_message(d) == ("/x", (0.25, 7))


def test_bundle_with_timetag_and_nesting() -> None:
    inner = encode_bundle([encode_message("/b", [2])], unix_to_timetag(1000.0))
    packet = decode_packet(encode_bundle([encode_message("/a", [1]), inner]))
    assert [(w, m) for w, _, m in packet] == [(None, ("/a", (1,))), (pytest.approx(1000.0), ("/b", (2,)))]
    assert packet[0][1] == encode_message("/a", [1])  # the raw bytes of the element


def test_timetag_conversions() -> None:
    assert timetag_to_unix(unix_to_timetag(1234.5)) == pytest.approx(1234.5, abs=1e-6)
    assert [w for w, _, _ in decode_packet(encode_bundle([encode_message("/a")], IMMEDIATELY))] == [None]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_corpus_raises_with_reason(name: str) -> None:
    data, reason = MALFORMED[name]
    with pytest.raises(OSCDecodeError) as exc:
        decode_packet(data)
    assert exc.value.reason == reason


def test_deeply_nested_bundle_is_refused() -> None:
    packet = encode_message("/a", [1])
    for _ in range(6):
        packet = encode_bundle([packet])
    with pytest.raises(OSCDecodeError) as exc:
        decode_packet(packet)
    assert exc.value.reason == "bundle_too_deep"


def test_bad_element_fails_the_whole_bundle() -> None:
    good = encode_message("/nn/r/loss", [1.0])
    head = b"#bundle\x00" + b"\x00" * 7 + b"\x01"
    bad = head + struct.pack(">i", len(good)) + good + struct.pack(">i", 8) + b"/x\x00\x00"
    with pytest.raises(OSCDecodeError):
        decode_packet(bad)
