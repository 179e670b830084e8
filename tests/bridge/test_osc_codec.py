"""OSC decoding: the fast shapes, the general decoder, and a corpus of malformed datagrams."""

from __future__ import annotations

import math
import struct

import pytest

from trainsound.bridge.errors import OSCDecodeError
from trainsound.bridge.osc_codec import (
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


GOOD = encode_message("/nn/r/loss", [1.0])
MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "not_osc"),
    "garbage": (b"\xff\xfe\x00\x01hello", "not_osc"),
    "no nul after address": (b"/nn/r/loss", "truncated"),
    "address padding past end": (b"/nn/r/loss\x00", "bad_padding"),
    "truncated float": (GOOD[:-1], "truncated"),
    "extra bytes after fast shape": (GOOD + b"\x00\x00\x00\x00", "truncated"),
    "no comma": (b"/a\x00\x00f\x00\x00\x00\x00\x00\x00\x00", "no_type_tags"),
    "unknown tag": (b"/a\x00\x00,q\x00\x00\x00\x00\x00\x00", "bad_type_tag"),
    "non-utf8 address": (b"/\xff\xfe\x00,f\x00\x00\x3f\x80\x00\x00", "not_utf8"),
    "string arg without nul": (b"/a\x00\x00,s\x00\x00abcd", "truncated"),
    "negative blob size": (b"/a\x00\x00,b\x00\x00\xff\xff\xff\xff", "blob_too_large"),
    "huge blob size": (b"/a\x00\x00,b\x00\x00\x7f\xff\xff\xff", "blob_too_large"),
    "blob past end": (b"/a\x00\x00,b\x00\x00\x00\x00\x00\x08abcd", "truncated"),
    "trailing bytes": (b"/a\x00\x00,i\x00\x00" + struct.pack(">ii", 1, 2) + b"\x00", "truncated"),
    "address too long": (b"/" + b"a" * 2000 + b"\x00\x00\x00,f\x00\x00" + b"\x00" * 4, "address_too_long"),
    "bundle too short": (b"#bundle\x00\x00\x00", "truncated"),
    "bundle element size too big": (b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", 64) + GOOD, "bad_bundle"),
    "bundle element size unaligned": (
        b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", 3) + b"abc",
        "bad_bundle",
    ),
    "bundle element bad inside": (
        b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", 12) + b"/a\x00\x00,q\x00\x00\x00\x00\x00\x00",
        "bad_type_tag",
    ),
}


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
    bad = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", len(GOOD)) + GOOD + struct.pack(">i", 8) + b"/x\x00\x00"
    with pytest.raises(OSCDecodeError):
        decode_packet(bad)
