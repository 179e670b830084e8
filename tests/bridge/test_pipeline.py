"""Pipeline bounds (schedule horizon and queue, runs, voices), reload; the parser raises only its own errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trainsound.bridge.config import default, with_bridge
from trainsound.bridge.errors import OSCDecodeError
from trainsound.bridge.mapped import Mapped
from trainsound.bridge.mapping.groups import GroupOptions
from trainsound.bridge.outputs.base import Output
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.wire.osc import decode_packet, encode_bundle, encode_message, unix_to_timetag
from trainsound.bridge.wire.protocol import Event, ProtocolError, parse_event

NOW = 1_700_000_000.0


class Collect(Output):
    name = "collect"

    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []
        self.closed = False

    def handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if event is not None:
            self.events.append((event.t, event.address))

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def health(self) -> dict[str, Any]:
        return {"ok": True}


def _pipe(**bridge: Any) -> tuple[Pipeline, Collect]:
    out = Collect()
    return Pipeline(with_bridge(default(), **bridge), [out]), out


def _bundle(ahead: float, address: str = "/nn/r/loss") -> bytes:
    return encode_bundle([encode_message(address, [0.5])], unix_to_timetag(NOW + ahead))


def test_future_bundle_within_the_horizon_waits_for_its_time() -> None:
    p, out = _pipe(schedule_horizon=10.0)
    p.feed_datagram(_bundle(2.0), NOW)
    assert out.events == [] and p.scheduled == 1
    p.tick(NOW + 1.9)
    assert out.events == []
    p.tick(NOW + 2.01)
    assert [a for _, a in out.events] == ["/nn/r/loss"] and abs(out.events[0][0] - (NOW + 2.0)) < 1e-3


def test_bundle_beyond_the_horizon_plays_at_once_and_is_counted() -> None:
    p, out = _pipe(schedule_horizon=10.0)
    p.feed_datagram(_bundle(1e6), NOW)
    assert out.events == [(NOW, "/nn/r/loss")] and p.scheduled == 0
    assert p.stats.noted["beyond_horizon"] == 1


def test_schedule_queue_is_bounded() -> None:
    p, out = _pipe(schedule_horizon=60.0, schedule_queue=100)
    for _ in range(1000):
        p.feed_datagram(_bundle(30.0), NOW)
    assert p.scheduled == 100
    assert p.stats.noted["schedule_full"] == 900 and len(out.events) == 900
    p.close(NOW)
    assert len(out.events) == 1000 and out.closed  # shutdown plays what was scheduled


def test_runs_are_bounded_and_a_new_run_is_never_refused() -> None:
    p, _ = _pipe(max_runs=2, run_idle=60.0)
    for i, run in enumerate(("a", "b", "c")):
        p.feed_datagram(encode_message(f"/nn/{run}/loss", [0.5]), NOW + i)
    # Full, none idle for 60 s: the idlest (a) makes room for c.
    assert set(p.runs) == {"b", "c"} and p.stats.noted["run_evicted"] == 1 and not p.stats.dropped
    p.feed_datagram(encode_message("/nn/b/loss", [0.5]), NOW + 100)
    p.feed_datagram(encode_message("/nn/d/loss", [0.5]), NOW + 100)  # c idle for 98 s: forgotten
    assert set(p.runs) == {"b", "d"} and p.stats.noted["runs_forgotten"] == 1
    p, _ = _pipe(max_runs=16, run_idle=60.0)
    for i in range(17):
        p.feed_datagram(encode_message(f"/nn/r{i}/loss", [0.5]), NOW + i)
    # The idlest eighth at once (a flood of new names pays the voice-table pass once per 2 runs here).
    assert set(p.runs) == {f"r{i}" for i in range(2, 17)} and p.stats.noted["run_evicted"] == 1


def test_voices_are_bounded_per_table() -> None:
    p, _ = _pipe(max_voices=3)
    p.reload(replace(p.config, groups=GroupOptions(mode="none")))  # one voice per layer
    for layer in range(10):
        p.feed_datagram(encode_message(f"/nn/r/grad_norm/l{layer}", [1.0]), NOW + layer)
    assert p.engine.counters.voice_limit == 7 and len(p.engine.voices()["run,layer"]) == 3


def test_reload_keeps_outputs_schedule_and_counters() -> None:
    p, out = _pipe()
    p.feed_datagram(encode_message("/nn/r/loss", [1.0]), NOW)
    p.feed_datagram(_bundle(1.0), NOW)
    mapped = p.engine.counters.mapped
    p.reload(with_bridge(default(), max_voices=5))
    assert p.outputs == [out] and p.scheduled == 1 and p.engine.counters.mapped == mapped == 1
    assert p.engine.max_voices == 5


# -- coverage-guided-ish fuzzing of the parser (hypothesis) ---------------------------------------------
_osc_arg = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.text(max_size=20).filter(lambda s: "\x00" not in s),
    st.binary(max_size=40),
    st.booleans(),
    st.none(),
)
_address = st.one_of(
    st.sampled_from(["/nn/r/loss", "/nn/r/step", "/nn/r/grad_norm/l", "/nn/r/weight/l", "/nn/r/event", "/x"]),
    st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s).map(lambda s: "/" + s),
)


@st.composite
def _datagram(draw: st.DrawFn) -> bytes:
    msg = encode_message(draw(_address), draw(st.lists(_osc_arg, max_size=6)))
    if draw(st.booleans()):
        msg = encode_bundle([msg] * draw(st.integers(1, 3)), draw(st.sampled_from([1, 0, 2**64 - 1, 2**32])))
    # Mutate: truncate, flip, or splice.
    how = draw(st.integers(0, 3))
    if how == 1 and len(msg) > 1:
        msg = msg[: draw(st.integers(0, len(msg) - 1))]
    elif how == 2:
        i = draw(st.integers(0, len(msg) - 1))
        msg = msg[:i] + bytes([msg[i] ^ (1 << draw(st.integers(0, 7)))]) + msg[i + 1 :]
    elif how == 3:
        msg = msg + draw(st.binary(max_size=16))
    return msg


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_datagram(), st.binary(max_size=200)))
def test_parser_raises_only_its_own_errors(data: bytes) -> None:
    try:
        items = decode_packet(data)
    except OSCDecodeError as err:
        assert err.reason
        return
    for _when, raw, (address, args) in items:
        try:
            ev = parse_event(address, args, NOW, raw)
        except ProtocolError as err:
            assert err.reason
            continue
        assert all(isinstance(v, float) for v in ev.values)
        assert ev.finite == all(math.isfinite(v) for v in ev.values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_datagram(), st.binary(max_size=100)), max_size=30))
def test_pipeline_counts_every_datagram(datagrams: list[bytes]) -> None:
    p, _ = _pipe()
    for d in datagrams:
        p.feed_datagram(d, NOW)
    s = p.stats
    assert s.datagrams == len(datagrams)
    assert s.received >= s.accepted


def test_a_control_message_in_a_bundle_is_dropped_not_mapped() -> None:
    out = Collect()
    pipe = Pipeline(default(), [out])
    pipe.feed_datagram(encode_bundle([encode_message("/trainsound/status"), encode_message("/nn/r/loss", [0.5])]), NOW)
    assert pipe.stats.dropped == {"control_in_bundle": 1}
    assert [a for _, a in out.events] == ["/nn/r/loss"]


def test_incoming_messages_are_logged_on_the_wire_logger_at_debug(caplog: Any) -> None:
    pipe = Pipeline(default(), [])
    pipe.feed_datagram(encode_message("/nn/r/loss", [0.5]), NOW, ("127.0.0.1", 5000))
    assert not caplog.records  # the level is read at start and every tick: not on yet
    caplog.set_level("DEBUG", logger="trainsound.osc.in")
    pipe.tick(NOW)
    pipe.feed_datagram(encode_message("/nn/r/loss", [0.25]), NOW, ("127.0.0.1", 5000))
    [rec] = [r for r in caplog.records if r.name == "trainsound.osc.in"]
    assert rec.getMessage() == "127.0.0.1:5000 /nn/r/loss (0.25,)"
