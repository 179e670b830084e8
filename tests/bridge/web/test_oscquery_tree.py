"""The OSCQuery namespace built from the feed's events (pure)."""

from __future__ import annotations

import json
import struct

from trainsound.bridge.web.feed import Feed
from trainsound.bridge.web.oscquery_tree import (
    CONTROL,
    KIND_DESCRIPTIONS,
    attribute,
    find,
    host_info,
    namespace,
    path_changes,
)
from trainsound.bridge.wire.protocol import VALUE_NAMES, parse_event


def events(*messages: tuple[str, tuple[object, ...]]) -> dict[str, object]:
    out = {}
    for address, args in messages:
        ev = parse_event(address, args, 0.0, b"")  # type: ignore[arg-type]
        out[address] = ev
    return out


def test_every_kind_has_a_description_and_a_type() -> None:
    assert set(KIND_DESCRIPTIONS) == set(VALUE_NAMES)
    tree = namespace(events(
        ("/nn/a/step", (12, 1)), ("/nn/a/loss", (0.5,)), ("/nn/a/metric/lr", (0.001,)),
        ("/nn/a/grad_norm/fc1", (1.5,)), ("/nn/a/weight/fc1", (0.0, 0.1, 0.4, 3.0, 0.002)),
        ("/nn/a/activation_spectrum/fc1", (struct.pack("<2f", 1, 2),)),
        ("/nn/a/weight_units/fc1", (struct.pack("<3f", 1, 2, 3),)), ("/nn/a/event", ("epoch",)),
        ("/nn/b/step", (3,)),
    ))
    got = {path: (find(tree, path) or {}).get("TYPE") for path in (
        "/nn/a/step", "/nn/a/loss", "/nn/a/metric/lr", "/nn/a/grad_norm/fc1", "/nn/a/weight/fc1",
        "/nn/a/activation_spectrum/fc1", "/nn/a/weight_units/fc1", "/nn/a/event", "/nn/b/step")}
    assert got == {"/nn/a/step": "ii", "/nn/a/loss": "f", "/nn/a/metric/lr": "f", "/nn/a/grad_norm/fc1": "f",
                   "/nn/a/weight/fc1": "fffff", "/nn/a/activation_spectrum/fc1": "b", "/nn/a/weight_units/fc1": "b",
                   "/nn/a/event": "s", "/nn/b/step": "i"}
    weight = find(tree, "/nn/a/weight/fc1")
    assert weight is not None and weight["VALUE"] == [0.0, 0.1, 0.4, 3.0, 0.002]
    assert "mean, std, abs_max, norm, update_ratio" in weight["DESCRIPTION"] and "(fc1)" in weight["DESCRIPTION"]
    assert find(tree, "/nn/a/weight_units/fc1")["VALUE"] == [None]  # type: ignore[index]
    assert find(tree, "/nn/a/event")["RANGE"] == [{"VALS": ["end", "epoch", "nan", "skip", "start"]}]  # type: ignore[index]
    # Containers carry no TYPE and no value; FULL_PATH is the node's own address all the way down.
    grad = find(tree, "/nn/a/grad_norm")
    assert grad is not None and grad["ACCESS"] == 0 and "TYPE" not in grad and set(grad["CONTENTS"]) == {"fc1"}
    assert find(tree, "/") is tree and find(tree, "/nn/a/")["FULL_PATH"] == "/nn/a"  # type: ignore[index]
    json.dumps(tree, allow_nan=False)  # valid JSON: no NaN anywhere


def test_control_messages_are_always_there_write_only() -> None:
    tree = namespace({})
    assert find(tree, "/nn") == {"FULL_PATH": "/nn", "DESCRIPTION": "training runs (docs/protocol.md)",
                                 "ACCESS": 0, "CONTENTS": {}}
    ctl = find(tree, "/trainsound")
    assert ctl is not None
    assert set(ctl["CONTENTS"]) == set(CONTROL) == {"status", "ping", "snapshot", "targets", "learn",
                                                    "forward"}
    assert find(tree, "/trainsound/learn") == {
        "FULL_PATH": "/trainsound/learn", "DESCRIPTION": CONTROL["learn"][1], "ACCESS": 2, "TYPE": "sf"}


def test_non_finite_values_are_null_and_group_rows_are_not_addresses() -> None:
    feed = Feed()
    feed.handle(parse_event("/nn/r/loss", (float("inf"),), 1.0, b""), ())
    evs = dict(feed.copy().events)
    evs["group:r/0/000/h.0–h.2"] = parse_event("/nn/r/loss", (1.0,), 1.0, b"")._replace(address="group:r/0/000/h.0–h.2")
    tree = namespace(evs)
    assert find(tree, "/nn/r/loss")["VALUE"] == [None]  # type: ignore[index]
    assert set(find(tree, "/nn/r")["CONTENTS"]) == {"loss"}  # type: ignore[index]
    assert set(tree["CONTENTS"]) == {"nn", "trainsound"}


def test_attribute_queries_follow_the_proposal() -> None:
    tree = namespace(events(("/nn/r/loss", (0.25,))))
    loss, run, ping = find(tree, "/nn/r/loss"), find(tree, "/nn/r"), find(tree, "/trainsound/ping")
    assert loss is not None and run is not None and ping is not None
    assert attribute(loss, "VALUE") == (200, {"VALUE": [0.25]})
    assert attribute(loss, "TYPE") == (200, {"TYPE": "f"})
    assert attribute(loss, "FULL_PATH") == (200, {"FULL_PATH": "/nn/r/loss"})
    assert attribute(run, "TYPE") == (200, {})  # a container has no type: an empty object
    assert attribute(run, "CONTENTS")[1] == {"CONTENTS": {"loss": loss}}
    assert attribute(ping, "VALUE") == (204, None)  # write-only: no value to read
    assert attribute(loss, "UNIT") == (400, None) and attribute(loss, "value") == (400, None)


def test_host_info_names_the_osc_port() -> None:
    info = host_info("lab", "127.0.0.1", 9150, "127.0.0.1")
    assert info["OSC_PORT"] == 9150 and info["OSC_TRANSPORT"] == "UDP" and "OSC_IP" not in info
    assert info["EXTENSIONS"]["LISTEN"] is True and info["EXTENSIONS"]["PATH_ADDED"] is True
    assert info["EXTENSIONS"]["VALUE"] is True and "FULL_PATH" not in info["EXTENSIONS"]
    assert host_info("lab", "192.0.2.2", 9150, "0.0.0.0")["OSC_IP"] == "192.0.2.2"


def test_path_changes_name_each_method_and_the_common_container() -> None:
    assert path_changes({"/nn/a/loss"}, {"/nn/a/loss"}) == []
    assert path_changes(set(), {"/nn/a/grad_norm/fc2"}) == [
        {"COMMAND": "PATH_ADDED", "DATA": "/nn/a/grad_norm/fc2"},
        {"COMMAND": "PATH_CHANGED", "DATA": "/nn/a/grad_norm"}]
    assert path_changes({"/nn/a/loss", "/nn/a/step"}, {"/nn/b/loss", "group:b/0/000/x"}) == [
        {"COMMAND": "PATH_ADDED", "DATA": "/nn/b/loss"},
        {"COMMAND": "PATH_REMOVED", "DATA": "/nn/a/loss"},
        {"COMMAND": "PATH_REMOVED", "DATA": "/nn/a/step"},
        {"COMMAND": "PATH_CHANGED", "DATA": "/nn"}]
