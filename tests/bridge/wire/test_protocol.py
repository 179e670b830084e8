"""The protocol of docs/protocol.md: every message kind, and what does not fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainsound.bridge.wire.protocol import ProtocolError, parse_event


def ev(address: str, *args: object):  # type: ignore[no-untyped-def]
    return parse_event(address, tuple(args), 1.5, b"raw")  # type: ignore[arg-type]


def test_every_message_kind() -> None:
    assert ev("/nn/r/step", 10).values == (10.0,)
    assert ev("/nn/r/step", 10, 2).values == (10.0, 2.0)
    assert ev("/nn/r/loss", 0.5).values == (0.5,)
    assert ev("/nn/r/metric/accuracy", 0.9).name == "accuracy"
    g = ev("/nn/sweep-3/grad_norm/features.0", 1.25)
    assert (g.run, g.kind, g.name, g.values, g.t, g.raw) == ("sweep-3", "grad_norm", "features.0", (1.25,), 1.5, b"raw")
    w = ev("/nn/r/weight/fc1", 0.0, 0.1, 0.5, 3.0, 0.001)
    assert w.values == (0.0, 0.1, 0.5, 3.0, 0.001)
    s = ev("/nn/r/activation_spectrum/conv1", b"\x00" * 16)
    assert s.blob == b"\x00" * 16 and s.values == ()
    e = ev("/nn/r/event", "nan")
    assert (e.kind, e.name) == ("event", "nan")


def test_int_accepted_where_float_expected() -> None:
    assert ev("/nn/r/loss", 3).values == (3.0,)
    assert ev("/nn/r/weight/fc1", 0, 1, 2, 3, 4).values == (0.0, 1.0, 2.0, 3.0, 4.0)


def test_nonfinite_is_accepted_for_the_alarm() -> None:
    e = ev("/nn/r/grad_norm/fc1", math.nan)
    assert not e.finite


@pytest.mark.parametrize(
    ("address", "args", "reason"),
    [
        ("/other/thing", (1.0,), "not_nn"),
        ("/nn", (), "not_nn"),
        ("/nn/r", (1.0,), "unknown_address"),
        ("/nn/r/bogus", (1.0,), "unknown_address"),
        ("/nn/r/grad_norm", (1.0,), "unknown_address"),
        ("/nn/r/grad_norm/a/b", (1.0,), "unknown_address"),
        ("/nn/r/loss/extra", (1.0,), "unknown_address"),
        ("/nn//loss", (1.0,), "bad_address"),
        ("/nn/r/grad_norm/", (1.0,), "bad_address"),
        ("/nn/r/loss", (), "wrong_arg_count"),
        ("/nn/r/loss", (1.0, 2.0), "wrong_arg_count"),
        ("/nn/r/loss", ("x",), "wrong_type"),
        ("/nn/r/loss", (True,), "wrong_type"),
        ("/nn/r/step", (1.5,), "wrong_type"),
        ("/nn/r/step", (), "wrong_arg_count"),
        ("/nn/r/weight/fc1", (1.0, 2.0), "wrong_arg_count"),
        ("/nn/r/activation_spectrum/c", (1.0,), "wrong_type"),
        ("/nn/r/activation_spectrum/c", (b"abc",), "bad_blob"),
        ("/nn/r/activation_spectrum/c", (b"",), "bad_blob"),
        ("/nn/r/weight_units/fc2", (b"abcde",), "bad_blob"),
        ("/nn/r/weight_units/fc2", (0.5,), "wrong_type"),
        ("/nn/r/weight_units", (b"abcd",), "unknown_address"),
        ("/nn/r/weight_units/fc2", (bytes(4 * 8193),), "too_many_units"),
        ("/nn/r/event", ("explode",), "unknown_event"),
        ("/nn/r/event", (1,), "wrong_type"),
        ("/nn/" + "r" * 200 + "/loss", (1.0,), "name_too_long"),
    ],
)
def test_what_does_not_fit(address: str, args: tuple[object, ...], reason: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_event(address, args, 0.0, b"")  # type: ignore[arg-type]
    assert exc.value.reason == reason
    assert address[:40] in str(exc.value)  # the message names the address


def test_weight_units_carry_one_float32_per_unit_up_to_the_cap() -> None:
    from trainsound.bridge.wire.protocol import MAX_UNITS

    blob = np.arange(MAX_UNITS, dtype="<f4").tobytes()
    e = parse_event("/nn/r/weight_units/fc2", (blob,), 0.0, b"")
    assert (e.kind, e.name, e.values, e.blob) == ("weight_units", "fc2", (), blob)
