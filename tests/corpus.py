"""Malformed datagrams, each with the reason the bridge must count it under."""

from __future__ import annotations

import struct

from trainsound.bridge.wire.osc import encode_message

GOOD = encode_message("/nn/r/loss", [1.0])
MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "not_osc"),
    "garbage": (b"\xff\xfe\x00\x01hello", "not_osc"),
    "no nul after address": (b"/nn/r/loss", "truncated"),
    "address padding past end": (b"/nn/r/loss\x00", "bad_padding"),
    "truncated float": (GOOD[:-1], "truncated"),
    "extra bytes after fast shape": (GOOD + b"\x00\x00\x00\x00", "trailing_bytes"),
    "no comma": (b"/a\x00\x00f\x00\x00\x00\x00\x00\x00\x00", "no_type_tags"),
    "unknown tag": (b"/a\x00\x00,q\x00\x00\x00\x00\x00\x00", "bad_type_tag"),
    "non-utf8 address": (b"/\xff\xfe\x00,f\x00\x00\x3f\x80\x00\x00", "not_utf8"),
    "string arg without nul": (b"/a\x00\x00,s\x00\x00abcd", "truncated"),
    "negative blob size": (b"/a\x00\x00,b\x00\x00\xff\xff\xff\xff", "blob_too_large"),
    "huge blob size": (b"/a\x00\x00,b\x00\x00\x7f\xff\xff\xff", "blob_too_large"),
    "blob past end": (b"/a\x00\x00,b\x00\x00\x00\x00\x00\x08abcd", "truncated"),
    "trailing bytes": (b"/a\x00\x00,i\x00\x00" + struct.pack(">ii", 1, 2) + b"\x00", "trailing_bytes"),
    "trailing bytes after a string": (b"/a\x00\x00,s\x00\x00abc\x00" + b"\x00" * 4, "trailing_bytes"),
    "empty bundle": (b"#bundle\x00" + b"\x00" * 7 + b"\x01", "empty_bundle"),
    "unclosed array": (b"/a\x00\x00,[i\x00" + struct.pack(">i", 1), "bad_type_tag"),
    "array closing nothing": (b"/a\x00\x00,]\x00\x00", "bad_type_tag"),
    "address too long": (b"/" + b"a" * 2000 + b"\x00\x00\x00,f\x00\x00" + b"\x00" * 4, "address_too_long"),
    "bundle too short": (b"#bundle\x00\x00\x00", "truncated"),
    "bundle element size too big": (
        b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", 64) + GOOD,
        "bad_bundle",
    ),
    "bundle element size unaligned": (
        b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", 3) + b"abc",
        "bad_bundle",
    ),
    "bundle element bad inside": (
        b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", 12) + b"/a\x00\x00,q\x00\x00\x00\x00\x00\x00",
        "bad_type_tag",
    ),
}
