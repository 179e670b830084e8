"""The receive side: SLIP framing, exposure rules, allowlist, OSC over TCP in the one receive loop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import wait_until

from trainsound.bridge.config import default
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.receive.loop import TcpServer, UdpReceiver
from trainsound.bridge.receive.sockets import (
    Allowlist,
    ListenError,
    check_exposure,
    kernel_drops,
    open_tcp,
    open_udp,
)
from trainsound.bridge.wire.osc import decode_message, encode_message
from trainsound.bridge.wire.slip import END, ESC, SlipDecoder, encode


# -- SLIP -----------------------------------------------------------------------------------------
def test_slip_escapes_end_and_esc() -> None:
    assert encode(bytes((END, ESC, 1))) == bytes((END, ESC, 0xDC, ESC, 0xDD, 1, END))


@given(st.lists(st.binary(min_size=1, max_size=200), max_size=20), st.integers(1, 64))
def test_slip_round_trip_in_any_chunking(packets: list[bytes], chunk: int) -> None:
    stream = b"".join(encode(p) for p in packets)
    d = SlipDecoder(max_frame=1024)
    out = []
    for i in range(0, len(stream), chunk):
        out += d.feed(stream[i : i + chunk])
    assert out == packets and not d.errors


@given(st.binary(max_size=2000))
def test_slip_decoder_never_buffers_beyond_its_bound(data: bytes) -> None:
    d = SlipDecoder(max_frame=64)
    for p in d.feed(data):
        assert len(p) <= 64
    assert d.buffered <= 64
    assert all(e.reason in ("frame_too_large", "bad_slip_escape") for e in d.errors)


def test_slip_too_large_frame_is_skipped_to_its_end() -> None:
    d = SlipDecoder(max_frame=8)
    assert d.feed(encode(b"x" * 20) + encode(b"ok")) == [b"ok"]
    assert [e.reason for e in d.errors] == ["frame_too_large"]


# -- exposure and allowlist -------------------------------------------------------------------------
def test_non_loopback_needs_an_explicit_allowlist() -> None:
    with pytest.raises(ListenError, match=r"give --allow CIDR .* or set \[bridge\]\.allow"):
        check_exposure("0.0.0.0", allow_explicit=False)
    check_exposure("0.0.0.0", allow_explicit=True)
    check_exposure("127.0.0.1", allow_explicit=False)
    check_exposure("::1", allow_explicit=False)


def test_allowlist_matches_v4_mapped_and_rejects_garbage() -> None:
    a = Allowlist(["192.168.1.0/24"])
    assert a.allows("::ffff:192.168.1.7") and not a.allows("192.168.2.1") and not a.allows("not-an-ip")


def test_kernel_drops_are_readable_for_our_socket() -> None:
    s = open_udp("127.0.0.1", 0, 1 << 16)
    try:
        assert kernel_drops(s) == 0
    finally:
        s.close()


# -- TCP in the receive loop ------------------------------------------------------------------------
@pytest.fixture
def loop() -> Iterator[tuple[UdpReceiver, Pipeline, int]]:
    udp = open_udp("127.0.0.1", 0, 1 << 20)
    port = udp.getsockname()[1]
    pipe = Pipeline(default(), [])
    replies: list[object] = []

    def control(address: str, args: object, limit: int | None = None, sender: object = None) -> bytes | None:
        replies.append(address)
        return encode_message("/trainsound/pong", [1]) if address == "/trainsound/ping" else None

    allow = Allowlist(["127.0.0.0/8"])
    tcp = TcpServer(open_tcp("127.0.0.1", port), pipe.stats, allow, max_connections=2, max_frame=256)
    recv = UdpReceiver(udp, pipe, allow, tcp, control=control)
    th = threading.Thread(target=recv.serve)
    th.start()
    yield recv, pipe, port
    recv.stop()
    th.join()
    tcp.close()
    udp.close()


def test_tcp_and_udp_feed_the_same_pipeline(loop: tuple[UdpReceiver, Pipeline, int]) -> None:
    _recv, pipe, port = loop
    with socket.create_connection(("127.0.0.1", port)) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        c.sendall(encode(encode_message("/nn/t/loss", [0.5])) + encode(b"x" * 300) + encode(b"\xc0garbage"[1:]))
        u.sendto(encode_message("/nn/u/loss", [0.5]), ("127.0.0.1", port))
        c.sendall(encode(encode_message("/trainsound/ping")))
        c.settimeout(3)
        data = c.recv(1024)
        assert decode_message(SlipDecoder(1024).feed(data)[0])[0] == "/trainsound/pong"
        wait_until(lambda: pipe.stats.accepted == 2 and sum(pipe.stats.dropped.values()) == 2, 3.0)
    assert pipe.runs.keys() == {"t", "u"}
    assert pipe.stats.dropped == {"frame_too_large": 1, "not_osc": 1}


def test_tcp_connections_are_bounded(loop: tuple[UdpReceiver, Pipeline, int]) -> None:
    recv, pipe, port = loop
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        wait_until(lambda: pipe.stats.dropped.get("tcp_too_many_connections") == 1)
        assert recv.tcp is not None and recv.tcp.health()["connections"] == 2
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: recv.tcp is not None and recv.tcp.health()["connections"] == 0)


def test_tcp_from_outside_the_allowlist_is_refused(loop: tuple[UdpReceiver, Pipeline, int]) -> None:
    recv, pipe, port = loop
    assert recv.tcp is not None
    recv.tcp.allow = Allowlist(["10.0.0.0/8"])
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.settimeout(3)
        assert c.recv(10) == b""  # closed by the bridge
    assert pipe.stats.dropped["not_allowed"] == 1
