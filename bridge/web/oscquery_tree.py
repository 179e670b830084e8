"""The bridge's OSC address space as OSCQuery JSON (pure: events in, plain data out).

The tree is what the bridge takes at its OSC port: the ``/nn/<run>/…`` addresses of docs/protocol.md
for every run and layer that has sent something (with its latest value), and the control messages
``/trainsound/…`` (always there). Nodes follow the OSCQuery proposal (github.com/Vidvox/OSCQueryProposal):
``FULL_PATH``, ``CONTENTS`` for containers, ``TYPE``, ``ACCESS``, ``VALUE``, ``DESCRIPTION``, ``RANGE``.

>>> from trainsound.bridge.wire.protocol import parse_event
>>> ev = parse_event("/nn/r1/grad_norm/fc1", (0.5,), 0.0, b"")
>>> tree = namespace({ev.address: ev})
>>> node = find(tree, "/nn/r1/grad_norm/fc1")
>>> node["TYPE"], node["VALUE"], node["ACCESS"]
('f', [0.5], 3)
>>> sorted(find(tree, "/nn")["CONTENTS"]), {"learn", "ping"} <= set(find(tree, "/trainsound")["CONTENTS"])
(['r1'], True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..wire.protocol import BLOB_KINDS, CONTROL_PREFIX, EVENT_KINDS, NAMESPACE, VALUE_NAMES, Event

#: ACCESS bits: the value may be read (here, and streamed by LISTEN), and set (sent to the OSC port).
READ, WRITE = 1, 2
#: What each kind carries (docs/protocol.md's table, in a line each).
KIND_DESCRIPTIONS: dict[str, str] = {
    "step": "a training step finished: global step [, epoch]",
    "loss": "training loss of the step",
    "metric": "a scalar metric (accuracy, lr, val_loss, …)",
    "grad_norm": "L2 norm of the layer's gradient over all its parameters",
    "weight": "weight statistics of the layer: mean, std, abs_max, norm, update_ratio",
    "activation_spectrum": "activation magnitudes per frequency bin (float32 little-endian blob)",
    "weight_units": "mean weight per output unit of the layer (float32 little-endian blob)",
    "event": "a training event: start, end, epoch, nan, skip",
}
#: The kinds whose address has a name segment hold one method per name, under a container of the kind.
CONTAINER_DESCRIPTIONS: dict[str, str] = {
    "metric": "scalar metrics by name",
    "grad_norm": "gradient norms by layer",
    "weight": "weight statistics by layer",
    "activation_spectrum": "activation spectra by layer",
    "weight_units": "per-unit weights by layer",
}
#: The control messages the bridge answers (docs/protocol.md): address → (TYPE or None, description).
CONTROL: dict[str, tuple[str | None, str]] = {
    "status": (None, "replies /trainsound/status.reply s:json to the sender: counters, runs, voices, outputs"),
    "ping": (None, "replies /trainsound/pong i:protocol_version to the sender"),
    "snapshot": (None, "replies /trainsound/snapshot.reply s:json: runs with their latest rows, alarms"),
    "targets": (None, "replies /trainsound/targets.reply s:json: every MIDI-learn target"),
    "learn": ("sf", "s:target [f:seconds]: that target alone plays for a while (MIDI learn); "
                    "replies /trainsound/learn.reply s:json"),
    "forward": ("ssf", "s:run s:group [f:seconds], or nothing: a voice group in front of the sine output "
                       "(docs/sound.md); replies /trainsound/forward.reply s:json"),
}
#: The attributes this server fills in; HOST_INFO's EXTENSIONS says so (RANGE: the events' choices).
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "DESCRIPTION", "RANGE")


def osc_type(ev: Event) -> str:
    """The OSC type tag string of an event's kind (``step`` as it came: with or without its epoch).

    >>> from trainsound.bridge.wire.protocol import parse_event
    >>> osc_type(parse_event("/nn/r/step", (3, 1), 0.0, b"")), osc_type(parse_event("/nn/r/event", ("end",), 0.0, b""))
    ('ii', 's')
    """
    if ev.kind == "step":
        return "i" * max(1, len(ev.values))
    if ev.kind == "event":
        return "s"
    if ev.kind in BLOB_KINDS:
        return "b"
    return "f" * len(VALUE_NAMES[ev.kind])


def value_of(ev: Event) -> list[Any]:
    """``VALUE``: one JSON item per type tag; JSON has no NaN/Inf or blobs, so those are ``null``.

    >>> from trainsound.bridge.wire.protocol import parse_event
    >>> value_of(parse_event("/nn/r/loss", (float("nan"),), 0.0, b""))
    [None]
    >>> value_of(parse_event("/nn/r/step", (7,), 0.0, b""))
    [7]
    """
    if ev.kind == "event":
        return [ev.name]
    if ev.kind in BLOB_KINDS:
        return [None]
    if ev.kind == "step":
        return [int(v) for v in ev.values]
    return [v if math.isfinite(v) else None for v in ev.values]


def _container(path: str, description: str) -> dict[str, Any]:
    return {"FULL_PATH": path, "DESCRIPTION": description, "ACCESS": 0, "CONTENTS": {}}


def _method(ev: Event) -> dict[str, Any]:
    what = KIND_DESCRIPTIONS[ev.kind]
    subject = f" ({ev.name})" if ev.name and ev.kind != "event" else ""
    node: dict[str, Any] = {
        "FULL_PATH": ev.address,
        "DESCRIPTION": f"run {ev.run}: {what}{subject}",
        "ACCESS": READ | WRITE,
        "TYPE": osc_type(ev),
        "VALUE": value_of(ev),
    }
    if ev.kind == "event":
        node["RANGE"] = [{"VALS": sorted(EVENT_KINDS)}]
    return node


def namespace(events: Mapping[str, Event]) -> dict[str, Any]:
    """The whole tree: the runs' addresses from ``events`` (a feed's latest event per address; other keys,
    such as voice groups' rows, are skipped) and the control messages."""
    root = _container("/", "trainsound bridge: training telemetry in, sound out")
    nn = root["CONTENTS"][NAMESPACE] = _container(f"/{NAMESPACE}", "training runs (docs/protocol.md)")
    for address, ev in events.items():
        if not address.startswith(f"/{NAMESPACE}/") or ev.address != address:
            continue
        runs = nn["CONTENTS"]
        run = runs.get(ev.run)
        if run is None:
            run = runs[ev.run] = _container(f"/{NAMESPACE}/{ev.run}", f"training run {ev.run}")
        parts = address.split("/")  # "", nn, run, kind[, name]
        if len(parts) == 5:
            kind = run["CONTENTS"].get(ev.kind)
            if kind is None:
                kind = run["CONTENTS"][ev.kind] = _container("/".join(parts[:4]), CONTAINER_DESCRIPTIONS[ev.kind])
            kind["CONTENTS"][parts[4]] = _method(ev)
        else:
            run["CONTENTS"][ev.kind] = _method(ev)
    ctl = root["CONTENTS"][CONTROL_PREFIX.strip("/")] = _container(
        CONTROL_PREFIX.rstrip("/"), "messages to the bridge itself (to the OSC port; replies go to the sender)")
    for name, (tags, description) in CONTROL.items():
        node: dict[str, Any] = {"FULL_PATH": f"{CONTROL_PREFIX}{name}", "DESCRIPTION": description, "ACCESS": WRITE}
        if tags:
            node["TYPE"] = tags
        ctl["CONTENTS"][name] = node
    return root


def find(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The node at ``path`` (``/`` is the root; a trailing ``/`` is ignored), or ``None``.

    >>> find(namespace({}), "/trainsound/ping")["ACCESS"], find(namespace({}), "/nn/nobody")
    (2, None)
    """
    node: dict[str, Any] | None = tree
    for part in (p for p in path.split("/") if p):
        node = node.get("CONTENTS", {}).get(part) if node is not None else None
        if node is None:
            return None
    return node


def attribute(node: dict[str, Any], name: str) -> tuple[int, dict[str, Any] | None]:
    """``GET /path?NAME``: the HTTP status and the JSON body (the proposal's rules).

    >>> n = find(namespace({}), "/trainsound/ping")
    >>> attribute(n, "ACCESS"), attribute(n, "TYPE"), attribute(n, "VALUE"), attribute(n, "NOPE")
    ((200, {'ACCESS': 2}), (200, {}), (204, None), (400, None))
    """
    if name not in ATTRIBUTES:
        return 400, None  # unrecognised, or recognised but not served here: the proposal's 400
    if name == "VALUE" and not node.get("ACCESS", 0) & READ:
        return 204, None
    return 200, ({name: node[name]} if name in node else {})


def host_info(name: str, osc_host: str, osc_port: int, served_on: str) -> dict[str, Any]:
    """``/?HOST_INFO``: the OSC port is the bridge's UDP port (``OSC_IP`` only when it is on another address
    than the one OSCQuery is served on, and a wildcard says nothing: the client keeps the address it used).

    >>> host_info("t", "127.0.0.1", 9150, "127.0.0.1")["OSC_PORT"], "OSC_IP" in host_info("t", "0.0.0.0", 1, "::1")
    (9150, False)
    """
    info: dict[str, Any] = {
        "NAME": name,
        "OSC_PORT": osc_port,
        "OSC_TRANSPORT": "UDP",
        "EXTENSIONS": {**dict.fromkeys(ATTRIBUTES[2:], True), "LISTEN": True, "PATH_CHANGED": True,
                       "PATH_ADDED": True, "PATH_REMOVED": True},
    }
    if osc_host not in (served_on, "0.0.0.0", "::", ""):
        info["OSC_IP"] = osc_host
    return info


def path_changes(old: Iterable[str], new: Iterable[str]) -> list[dict[str, str]]:
    """The WebSocket notices for the methods that appeared and went between two sets of addresses:
    ``PATH_ADDED``/``PATH_REMOVED`` for each, then one ``PATH_CHANGED`` naming their deepest common container
    (clients that only know ``PATH_CHANGED`` reload that subtree).

    >>> [m["COMMAND"] + " " + m["DATA"] for m in path_changes({"/nn/a/loss"}, {"/nn/a/loss", "/nn/b/loss",
    ...                                                                         "/nn/b/step"})]
    ['PATH_ADDED /nn/b/loss', 'PATH_ADDED /nn/b/step', 'PATH_CHANGED /nn/b']
    """
    before = {a for a in old if a.startswith(f"/{NAMESPACE}/")}
    after = {a for a in new if a.startswith(f"/{NAMESPACE}/")}
    added, removed = sorted(after - before), sorted(before - after)
    if not added and not removed:
        return []
    out = [{"COMMAND": "PATH_ADDED", "DATA": a} for a in added]
    out += [{"COMMAND": "PATH_REMOVED", "DATA": a} for a in removed]
    common = [p.split("/") for p in (*added, *removed)]
    shared = common[0][:-1]
    for parts in common[1:]:
        n = 0
        while n < min(len(shared), len(parts) - 1) and shared[n] == parts[n]:
            n += 1
        shared = shared[:n]
    out.append({"COMMAND": "PATH_CHANGED", "DATA": "/".join(shared) or "/"})
    return out
