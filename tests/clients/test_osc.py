"""The plain client: exact wire format, bundles per step, and never raising into training."""

from __future__ import annotations

import doctest
import logging
import math
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import trainsound
from trainsound import Client, ClientArgumentError, send
from trainsound import errors as errors_mod
from trainsound import osc as osc_mod
from trainsound.bridge.service.status import query
from trainsound.bridge.wire.osc import encode_bundle, encode_message
from trainsound.bridge.wire.protocol import parse_event
from trainsound.torch import activations as activations_mod
from trainsound.torch import distributed as distributed_mod
from trainsound.torch import logs as logs_mod


@pytest.mark.parametrize("module", [osc_mod, errors_mod, activations_mod, distributed_mod, logs_mod])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


def test_step_bundle_is_byte_identical_to_the_reference_encoder(receiver) -> None:
    with Client(port=receiver.port, run="mnist sgd") as c:
        c.loss(0.5)
        c.metric("lr", 0.01)
        c.grad_norms({"features/0": 1.25, "fc1": 2.0})
        c.weights({"fc1": (0.0, 0.5, 1.5, 3.0, 0.25)})
        c.step(120, epoch=2)
    [data] = receiver.messages() and receiver.datagrams
    expected = encode_bundle(
        [
            encode_message("/nn/mnist_sgd/step", [120, 2]),
            encode_message("/nn/mnist_sgd/loss", [0.5]),
            encode_message("/nn/mnist_sgd/metric/lr", [0.01]),
            encode_message("/nn/mnist_sgd/grad_norm/features.0", [1.25]),
            encode_message("/nn/mnist_sgd/grad_norm/fc1", [2.0]),
            encode_message("/nn/mnist_sgd/weight/fc1", [0.0, 0.5, 1.5, 3.0, 0.25]),
        ]
    )
    assert data == expected


def test_every_message_passes_the_bridge_protocol(receiver) -> None:
    with Client(port=receiver.port, run="r") as c:
        c.event("start")
        c.activation_spectrum("conv1", np.array([1.0, 0.5, 0.25], dtype=np.float64))
        c.step(1)
        c.event("end")
    msgs = receiver.messages()
    events = [parse_event(a, args, 0.0, b"") for a, args in msgs]
    assert [(e.kind, e.name) for e in events] == [
        ("step", ""),  # the step message always leads its bundle
        ("event", "start"),
        ("activation_spectrum", "conv1"),
        ("event", "end"),
    ]
    blob = events[2].blob
    assert blob is not None and np.frombuffer(blob, "<f4").tolist() == [1.0, 0.5, 0.25]


def test_one_address_in_several_shapes_stays_well_formed(receiver) -> None:
    """Issue 22: ``step`` without and then with its epoch (``,i`` then ``,ii``) reused the first shape's cached
    size, so every later bundle was malformed (the bridge dropped 944 of 1,000 steps). Every datagram is
    decoded here by python-osc, an encoder of its own, and by the bridge's protocol."""
    from pythonosc.osc_bundle import OscBundle

    with Client(port=receiver.port, run="r") as c:
        for i in range(6):
            c.loss(0.5)
            c.activation_spectrum("conv1", np.ones(2 + i))  # a blob whose size changes from step to step
            c.step(i, epoch=None if i < 2 else i // 2)
    receiver.messages()
    assert len(receiver.datagrams) == 6
    seen = []
    for data in receiver.datagrams:
        bundle = OscBundle(data)
        assert bundle.num_contents == 3
        step, loss, spectrum = (bundle.content(k) for k in range(3))
        assert (step.address, loss.address, loss.params) == ("/nn/r/step", "/nn/r/loss", [0.5])
        assert len(spectrum.params[0]) == 4 * (2 + len(seen))
        seen.append(tuple(step.params))
    assert seen == [(0,), (1,), (2, 1), (3, 1), (4, 2), (5, 2)]
    assert all(parse_event(a, args, 0.0, b"") for a, args in receiver.messages())


def test_nonfinite_values_are_sent_as_they_are_with_one_nan_event(receiver) -> None:
    with Client(port=receiver.port, run="r") as c:
        c.loss(float("nan"))
        c.step(0)
        c.grad_norms({"fc1": float("inf")})
        c.loss(1e39)  # beyond float32: becomes +Inf instead of raising
        c.step(1)
    msgs = receiver.messages()
    assert [args for a, args in msgs if a == "/nn/r/event"] == [("nan",)]
    losses = [args[0] for a, args in msgs if a == "/nn/r/loss"]
    assert math.isnan(losses[0]) and losses[1] == math.inf
    assert [args[0] for a, args in msgs if a == "/nn/r/grad_norm/fc1"] == [math.inf]


def test_a_large_step_is_split_into_datagrams_under_the_limit(receiver) -> None:
    with Client(port=receiver.port, run="big", max_datagram=2000) as c:
        c.grad_norms({f"layer{i}": float(i) for i in range(300)})
        c.step(7)
    msgs = receiver.messages()
    assert len(receiver.datagrams) > 1
    assert max(len(d) for d in receiver.datagrams) <= 2000
    assert msgs[0] == ("/nn/big/step", (7,))
    assert [args[0] for _, args in msgs[1:]] == [float(i) for i in range(300)]


def test_no_bridge_listening_warns_once_counts_and_keeps_trying(closed_port, caplog, bridge_proc) -> None:
    """Issue 16 #25: over UDP the kernel's "port unreachable" reaches a connected socket as ECONNREFUSED on a
    later send: one warning, the refused datagrams counted, nothing raised; once a bridge listens on the
    port the next send arrives (before: no warning at all, every datagram counted as sent)."""
    caplog.set_level(logging.WARNING, logger="trainsound.osc")
    with Client(port=closed_port, run="r") as c:
        for i in range(50):
            c.loss(float(i))
            c.step(i)
            time.sleep(0.001)  # the ICMP answer is asynchronous: give it a moment, as a real step would
        assert c.sent + c.dropped == 50 and c.dropped >= 10
        warnings = [r.getMessage() for r in caplog.records if "cannot send" in r.getMessage()]
        assert warnings == [f"trainsound: cannot send to 127.0.0.1:{closed_port}: Connection refused "
                            "(is the bridge running?); training goes on, further failures are only counted"]
        bridge_proc(["--no-midi"], port=closed_port)
        dropped = c.dropped  # the first send may still carry the refusal of the last one before the start
        for i in range(50, 53):
            c.loss(float(i))
            c.step(i)
        lost = c.dropped - dropped
    assert lost <= 1
    deadline = time.monotonic() + 5
    while query("127.0.0.1", closed_port)["accepted"] < 2 * (3 - lost) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert query("127.0.0.1", closed_port)["accepted"] == 2 * (3 - lost)  # loss + step per datagram
    assert len([r for r in caplog.records if "cannot send" in r.getMessage()]) == 1


def test_a_send_failure_is_counted_and_logged_once(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="trainsound.osc")
    c = Client(port=9, run="r", max_datagram=65000)
    c.activation_spectrum("huge", np.zeros(30000, dtype=np.float32))  # 120 kB: the kernel refuses it
    c.activation_spectrum("huge2", np.zeros(30000, dtype=np.float32))
    c.step(0)
    c.flush()
    assert c.dropped >= 2
    assert len([r for r in caplog.records if "cannot send" in r.getMessage()]) == 1
    c.close()


def test_send_one_liner_and_env_override(receiver, monkeypatch) -> None:
    monkeypatch.setenv("TRAINSOUND_ADDR", f"127.0.0.1:{receiver.port}")
    send("/nn/shell/loss", 0.42)
    send("/nn/shell/step", 3, 1)
    send("/nn/shell/event", "epoch")
    assert receiver.messages() == [
        ("/nn/shell/loss", (struct.unpack(">f", struct.pack(">f", 0.42))[0],)),
        ("/nn/shell/step", (3, 1)),
        ("/nn/shell/event", ("epoch",)),
    ]
    assert Client(run="x").port == receiver.port


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run": ""}, "run must be a non-empty string, got ''"),
        ({"port": 70000}, "port must be an integer in 1..65535, got 70000"),
        ({"port": "9150"}, "port must be an integer in 1..65535, got '9150'"),
        ({"host": ""}, "host must be a non-empty string, got ''"),
        ({"max_datagram": 100}, "max_datagram must be an integer in 512..65000, got 100"),
        ({"host": "no-such-host.invalid"}, "host 'no-such-host.invalid' cannot be resolved"),
    ],
)
def test_wrong_arguments_fail_in_the_constructor_naming_the_argument(kwargs, message) -> None:
    with pytest.raises(ClientArgumentError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        Client(**kwargs)


def test_bad_env_addr_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("TRAINSOUND_ADDR", "localhost")
    with pytest.raises(ClientArgumentError, match=r"^TRAINSOUND_ADDR must be host:port, got 'localhost'$"):
        Client()


def test_send_rejects_a_relative_address() -> None:
    with pytest.raises(ClientArgumentError, match="address must be a string starting with '/'"):
        send("nn/x/loss", 1.0)


def test_unknown_event_is_ignored_not_raised(receiver, caplog) -> None:
    with Client(port=receiver.port, run="r") as c:
        c.event("explode")
        c.flush()
    assert receiver.messages() == []
    assert "unknown event kind 'explode'" in caplog.text


def test_importing_trainsound_imports_neither_torch_nor_tensorflow() -> None:
    code = (
        "import sys, trainsound, trainsound.keras\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version() -> None:
    assert trainsound.__version__ == "0.1.0"
