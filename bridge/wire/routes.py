"""Known addresses: a datagram's messages decoded and validated with one dict lookup each.

A training run sends the same few hundred addresses every step, each with the same type tags. The
first message at an address takes the full path (:func:`.osc.decode_message`, then
:func:`.protocol.parse_event`); once it is valid, its address and type tags (the message's *header*)
are remembered as a :class:`Route`. A later message at that address whose header and length match is
the same shape by construction, so its values are one ``struct`` call and its event needs no checks.
What does not match (a new address, other type tags, another length, a nested or timed bundle) takes
the full path, which validates and counts it as before: routes only ever skip work whose answer is known.

>>> from .osc import encode_bundle, encode_message
>>> routes = Routes()
>>> msg = encode_message("/nn/r/grad_norm/fc1", [0.5])
>>> routes.learn(msg, "/nn/r/grad_norm/fc1", "r", "grad_norm", "fc1")
>>> [(r.name, v) for r, v, _ in routes.split(encode_bundle([msg]))]
[('fc1', (0.5,))]
>>> routes.split(encode_bundle([encode_message("/nn/r/grad_norm/fc2", [0.5])])) is None
True
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .osc import BUNDLE_TAG, IMMEDIATELY

#: Addresses remembered at most (a flood of new names must not grow memory): the table starts afresh.
MAX_ROUTES = 65_536
_IMMEDIATE_HEAD = BUNDLE_TAG + struct.pack(">Q", IMMEDIATELY)
_SIZE = struct.Struct(">i").unpack_from

#: Type tags a route may have (padded) → (their length, the values' struct): the shapes the clients send.
_SHAPES: dict[bytes, tuple[int, struct.Struct]] = {
    b",f\x00\x00": (4, struct.Struct(">f")),
    b",d\x00\x00": (4, struct.Struct(">d")),
    b",i\x00\x00": (4, struct.Struct(">i")),
    b",ii\x00": (4, struct.Struct(">ii")),
    b",fffff\x00\x00": (8, struct.Struct(">fffff")),
}
_INT_TAGS = frozenset({b",i\x00\x00", b",ii\x00"})


class Route:
    """One known address: what its messages are (``run``, ``kind``, ``name``) and how to read their values."""

    __slots__ = ("address", "body", "floats", "header", "kind", "name", "run", "size", "unpack")

    def __init__(self, address: str, run: str, kind: str, name: str, header: bytes, size: int,
                 unpack: Callable[[Any, int], tuple[Any, ...]], floats: bool) -> None:
        self.address, self.run, self.kind, self.name = address, run, kind, name
        self.header = header
        """The message's bytes up to its arguments: the padded address and type tags."""
        self.body = len(header)
        self.size = size
        self.unpack = unpack
        self.floats = floats
        """Its arguments decode to floats already (``,i`` ones are made floats, as the protocol does)."""

    def values(self, args: tuple[Any, ...]) -> tuple[float, ...]:
        return args if self.floats else tuple(float(a) for a in args)


class Routes:
    """The table of known addresses (see the module docstring); one per pipeline, receive thread only."""

    def __init__(self) -> None:
        self._by_address: dict[bytes, Route] = {}

    def __len__(self) -> int:
        return len(self._by_address)

    def learn(self, raw: bytes, address: str, run: str, kind: str, name: str) -> None:
        """Remember the shape of a message that the full path decoded and accepted (if it has a fixed one)."""
        end = raw.find(b"\x00")
        pos = (end + 4) & ~3
        shape = _SHAPES.get(raw[pos : pos + 4]) or _SHAPES.get(raw[pos : pos + 8])
        if end <= 0 or shape is None:
            return
        tag_len, st = shape
        if len(raw) != pos + tag_len + st.size or raw[pos : pos + tag_len] not in _SHAPES:
            return
        if len(self._by_address) >= MAX_ROUTES:
            self._by_address.clear()
        tags = raw[pos : pos + tag_len]
        self._by_address[raw[:end]] = Route(address, run, kind, name, raw[: pos + tag_len], len(raw),
                                            st.unpack_from, tags not in _INT_TAGS)

    def forget(self) -> None:
        self._by_address.clear()

    def split(self, data: bytes) -> list[tuple[Route, tuple[Any, ...], bytes]] | None:
        """A datagram as ``[(route, args, raw message)]`` if it is a plain message or an immediate bundle of
        messages that all follow known routes; else ``None`` (the full path decodes it)."""
        get = self._by_address.get
        if data[:1] == b"/":
            r = get(data[: data.find(b"\x00")])
            if r is None or len(data) != r.size or not data.startswith(r.header):
                return None
            return [(r, r.unpack(data, r.body), data)]
        if not data.startswith(_IMMEDIATE_HEAD):
            return None
        out: list[tuple[Route, tuple[Any, ...], bytes]] = []
        add = out.append
        find, startswith = data.find, data.startswith
        n = len(data)
        pos = 16
        while pos < n:
            if pos + 4 > n:
                return None
            size = _SIZE(data, pos)[0]
            start = pos + 4
            pos = start + size
            if size <= 0 or pos > n:
                return None
            r = get(data[start : find(b"\x00", start, pos)])
            if r is None or r.size != size or not startswith(r.header, start):
                return None
            add((r, r.unpack(data, start + r.body), data[start:pos]))
        return out or None
