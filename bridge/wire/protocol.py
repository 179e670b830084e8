"""The trainsound OSC protocol (docs/protocol.md): address → :class:`Event`.

Pure functions: no sockets, no clocks. Validation failures raise
:class:`ProtocolError` whose ``reason`` is the counter key the bridge uses.

>>> e = parse_event("/nn/run1/grad_norm/features.0", (3,), 0.0, b"")
>>> (e.run, e.kind, e.name, e.values)
('run1', 'grad_norm', 'features.0', (3.0,))
"""

from __future__ import annotations

import functools
import math
import re
from typing import NamedTuple

from ..errors import TrainsoundError
from .osc import OscArg

PROTOCOL_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9150
NAMESPACE = "nn"
#: Messages to the bridge itself (``/trainsound/status``, ``/trainsound/ping``), answered by the receive layer.
CONTROL_PREFIX = "/trainsound/"
#: The control messages the bridge answers (docs/protocol.md); any other under the prefix is ``unknown_control``.
CONTROL_ADDRESSES = frozenset(
    CONTROL_PREFIX + name for name in ("status", "ping", "snapshot", "targets", "learn", "forward")
)

#: Event kinds and the names of their numeric arguments, in order.
VALUE_NAMES: dict[str, tuple[str, ...]] = {
    "step": ("step", "epoch"),
    "loss": ("value",),
    "metric": ("value",),
    "grad_norm": ("value",),
    "weight": ("mean", "std", "abs_max", "norm", "update_ratio"),
    "activation_spectrum": (),
    "weight_units": (),
    "event": (),
}
#: Kinds whose address carries a name segment (layer or metric name).
NAMED_KINDS = frozenset({"metric", "grad_norm", "weight", "activation_spectrum", "weight_units"})
#: Kinds whose one argument is a blob of float32 little-endian values.
BLOB_KINDS = frozenset({"activation_spectrum", "weight_units"})
#: Most values in a ``weight_units`` blob (32 KiB: one message fits a UDP datagram with room to spare).
#: Clients average a wider layer's units in contiguous groups down to this many; the bridge rejects
#: a longer blob as ``too_many_units``.
MAX_UNITS = 8192
#: ``skip``: the optimizer skipped a step (an AMP overflow); an addition to version 1.
EVENT_KINDS = frozenset({"start", "end", "epoch", "nan", "skip"})
#: Longest run, layer or metric name; senders cut names to this many UTF-8 bytes.
MAX_NAME_LEN = 128

#: What a name may not hold: OSC pattern characters (a name is matched against patterns), space and ``#``
#: (the same set a sender's :func:`sanitize` replaces), control characters (they would forge log lines).
_NAME_PATTERN_CHARS = " #*,?[]{}"
_BAD_CHARS = str.maketrans(
    {c: "_" for c in _NAME_PATTERN_CHARS} | {chr(c): "_" for c in (*range(0x20), *range(0x7F, 0xA0))} | {"/": "."}
)
_BAD_NAME = re.compile("[" + re.escape(_NAME_PATTERN_CHARS) + "\x00-\x1f\x7f-\x9f]")


def sanitize(name: str) -> str:
    """Make ``name`` one legal address segment: ``/`` → ``.``, OSC pattern, space and control
    characters → ``_``, at most :data:`MAX_NAME_LEN` UTF-8 bytes.

    >>> sanitize("features/0"), sanitize("my run #3"), sanitize("a{b}[c]*?,d"), sanitize("")
    ('features.0', 'my_run__3', 'a_b__c____d', '_')
    >>> len(sanitize("x" * 300).encode())
    128
    """
    clean = str(name).translate(_BAD_CHARS)
    raw = clean.encode("utf-8")
    if len(raw) > MAX_NAME_LEN:
        clean = raw[:MAX_NAME_LEN].decode("utf-8", errors="ignore")
    return clean or "_"


class ProtocolError(TrainsoundError, ValueError):
    """A well-formed OSC message that does not fit the protocol."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


_isfinite = math.isfinite


class Event(NamedTuple):
    """One accepted protocol message."""

    t: float
    """Arrival (or scheduled) time, Unix seconds."""
    run: str
    kind: str
    name: str
    """Layer or metric name, the event kind for ``event``; ``""`` otherwise."""
    values: tuple[float, ...]
    blob: bytes | None
    address: str
    raw: bytes
    """The message exactly as received (what session recordings store)."""

    @property
    def finite(self) -> bool:
        v = self.values
        if len(v) == 1:  # the usual case, asked per value: no generator
            return _isfinite(v[0])
        return all(map(_isfinite, v))


def _floats(address: str, args: tuple[OscArg, ...], n: int) -> tuple[float, ...]:
    if len(args) != n:
        raise ProtocolError("wrong_arg_count", f"{address} takes {n} argument(s), got {len(args)}")
    out = []
    for a in args:
        # Exact types: i h f d decode to int and float; T F (bool), t c r m (int and str subclasses),
        # N I (None) and arrays (list) are valid OSC but not numbers here.
        t = type(a)
        if t is not float and t is not int:
            raise ProtocolError("wrong_type", f"{address} wants numbers, got {_osc_type(a)}")
        out.append(float(a))  # type: ignore[arg-type]
    return tuple(out)


def _osc_type(a: object) -> str:
    """What an argument was on the wire, for error messages.

    >>> _osc_type(True), _osc_type([1]), _osc_type("x")
    ('bool (OSC T/F)', 'array (OSC [ ])', 'str')
    """
    if isinstance(a, bool):
        return "bool (OSC T/F)"
    if a is None:
        return "nil (OSC N/I)"
    if isinstance(a, list):
        return "array (OSC [ ])"
    return type(a).__name__


def _check_name(address: str, what: str, name: str) -> None:
    if not name:
        raise ProtocolError("bad_address", f"{address} has an empty {what}")
    if len(name) > MAX_NAME_LEN // 4 and len(name.encode("utf-8")) > MAX_NAME_LEN:  # bytes, not characters
        raise ProtocolError("name_too_long", f"{address}: {what} longer than {MAX_NAME_LEN} UTF-8 bytes")
    bad = _BAD_NAME.search(name)
    if bad:
        raise ProtocolError("bad_name", f"{address}: {what} holds {bad.group()!r} (OSC pattern or control character)")


@functools.lru_cache(maxsize=65_536)
def split_address(address: str) -> tuple[str, str, str]:
    """``/nn/<run>/<kind>[/<name>]`` → ``(run, kind, name)``, validated; memoised per address,
    since a training run sends the same few hundred addresses every step.

    >>> split_address("/nn/r/grad_norm/fc1")
    ('r', 'grad_norm', 'fc1')
    """
    parts = address.split("/")
    # parts[0] is "" (address starts with '/')
    if len(parts) < 3 or parts[1] != NAMESPACE:
        raise ProtocolError("not_nn", f"{address} is not under /{NAMESPACE}")
    if len(parts) < 4:
        raise ProtocolError("unknown_address", f"{address}: no message kind")
    run, kind = parts[2], parts[3]
    _check_name(address, "run name", run)
    if kind not in VALUE_NAMES:
        raise ProtocolError("unknown_address", f"{address}: unknown kind {kind!r}")
    if kind in NAMED_KINDS:
        if len(parts) != 5:
            raise ProtocolError("unknown_address", f"{address}: {kind} takes exactly one name segment")
        name = parts[4]
        _check_name(address, "name", name)
    elif len(parts) != 4:
        raise ProtocolError("unknown_address", f"{address}: {kind} takes no name segment")
    else:
        name = ""
    return run, kind, name


def parse_event(address: str, args: tuple[OscArg, ...], t: float, raw: bytes) -> Event:
    """Validate a decoded message against the protocol and build an :class:`Event`.

    Non-finite values are *accepted* here (they become the NaN alarm later).

    Raises:
        ProtocolError: ``not_nn`` (outside ``/nn``), ``unknown_address``,
            ``bad_address``, ``bad_name``, ``wrong_arg_count``, ``wrong_type``,
            ``bad_blob``, ``too_many_units``, ``unknown_event``, ``name_too_long``.
    """
    run, kind, name = split_address(address)
    blob: bytes | None = None
    if kind == "step":
        if len(args) not in (1, 2):
            raise ProtocolError("wrong_arg_count", f"{address} takes step [epoch], got {len(args)} argument(s)")
        if not all(type(a) is int for a in args):
            raise ProtocolError("wrong_type", f"{address} wants integers (OSC i or h)")
        values = tuple(float(a) for a in args)  # type: ignore[arg-type]
    elif kind == "event":
        if len(args) != 1 or type(args[0]) is not str:
            raise ProtocolError("wrong_type", f"{address} takes one string (start, end, epoch, nan, skip)")
        if args[0] not in EVENT_KINDS:
            raise ProtocolError("unknown_event", f"{address}: unknown event {args[0]!r}")
        name, values = args[0], ()
    elif kind in BLOB_KINDS:
        if len(args) != 1 or type(args[0]) is not bytes:
            raise ProtocolError("wrong_type", f"{address} takes one blob")
        blob = args[0]
        if len(blob) % 4 or not blob:
            raise ProtocolError("bad_blob", f"{address}: blob of {len(blob)} bytes is not float32 values")
        if kind == "weight_units" and len(blob) > 4 * MAX_UNITS:
            raise ProtocolError("too_many_units", f"{address}: {len(blob) // 4} units, at most {MAX_UNITS}")
        values = ()
    else:
        values = _floats(address, args, len(VALUE_NAMES[kind]))
    return Event(t, run, kind, name, values, blob, address, raw)


def value_index(kind: str, arg: int | str) -> int:
    """Resolve a rule's ``arg`` (index or name) for an event kind.

    >>> value_index("weight", "update_ratio")
    4
    """
    names = VALUE_NAMES[kind]
    if isinstance(arg, int):
        return arg
    return names.index(arg)
