"""``trainsound send``: one OSC message from the shell, to the bridge every command and client chooses
(``--to``, else ``$TRAINSOUND_ADDR``, else 127.0.0.1:9150), its words typed by what the address expects."""

from __future__ import annotations

import argparse
import logging
import re
import socket
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import TrainsoundError
from ..wire.address import TO_HELP, choose_bridge
from ..wire.protocol import CONTROL_PREFIX, NAMESPACE, ProtocolError, parse_event, split_address
from ..wire.slip import encode as slip_encode

log = logging.getLogger(__name__)
#: Exit code of a message refused before sending (a usage error, like the CLI's).
EXIT_USAGE = 2

#: ``send``'s values may start with '-' (``-inf``, ``-1e-3``); argparse only knows ``-1`` and ``-.5`` as numbers.
NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf(inity)?$|nan$)", re.IGNORECASE)


def parse_send_arg(text: str) -> Any:
    """Type a shell word for any OSC address: ``i:``/``f:``/``s:`` prefixes force a type, else int, float
    (``inf``, ``-inf``, ``nan`` included), string.

    >>> [parse_send_arg(w) for w in ("3", "0.5", "-inf", "nan", "fc1", "s:12", "f:2")]
    [3, 0.5, -inf, nan, 'fc1', '12', 2.0]
    """
    if len(text) > 2 and text[1] == ":" and text[0] in "ifs":
        kind, rest = text[0], text[2:]
        return int(rest) if kind == "i" else float(rest) if kind == "f" else rest
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def send_values(address: str, words: Sequence[str]) -> list[Any]:
    """Type the words of ``trainsound send`` by what the ``/nn`` address expects: ``step`` takes integers,
    ``event`` a string (``nan`` stays the event name), every other kind floats (``-inf``, ``nan``, ``3``);
    ``i:``/``f:``/``s:`` still force a type. Other addresses follow :func:`parse_send_arg`.

    >>> send_values("/nn/r/event", ["nan"]), send_values("/nn/r/loss", ["-inf"]), send_values("/nn/r/step", ["3", "1"])
    (['nan'], [-inf], [3, 1])
    >>> send_values("/nn/r/loss", ["low"])
    Traceback (most recent call last):
    ...
    trainsound.bridge.errors.TrainsoundError: /nn/r/loss takes numbers, got 'low' (force a type with s:)
    """
    try:
        kind = split_address(address)[1]
    except ProtocolError:
        kind = ""
    out: list[Any] = []
    for w in words:
        if kind in ("", "activation_spectrum") or (len(w) > 2 and w[1] == ":" and w[0] in "ifs"):
            out.append(parse_send_arg(w))
        elif kind == "event":
            out.append(w)
        else:
            try:
                out.append(int(w) if kind == "step" else float(w))
            except ValueError:
                what = "integers" if kind == "step" else "numbers"
                raise TrainsoundError(f"{address} takes {what}, got {w!r} (force a type with s:)") from None
    return out


def protocol_problem(address: str, values: Sequence[Any]) -> str | None:
    """Why the bridge would drop this message (docs/protocol.md), or ``None``: a ``/nn`` message is checked
    as the bridge checks it, so ``send`` refuses what the bridge would only count and drop.

    >>> protocol_problem("/nn/r/loss", [0.5]) is None, protocol_problem("/x", [1]) is None
    (True, True)
    >>> protocol_problem("/nn/r/los", [0.5])
    "/nn/r/los: unknown kind 'los'"
    >>> protocol_problem("/nn/r/loss", [])
    '/nn/r/loss takes 1 argument(s), got 0'
    """
    if not address.startswith(f"/{NAMESPACE}/") and address != f"/{NAMESPACE}":
        return None
    try:
        parse_event(address, tuple(values), 0.0, b"")
    except ProtocolError as err:
        return str(err).partition(": ")[2] or str(err)  # the detail names the address; the reason is a counter key
    return None


def cmd_send(args: argparse.Namespace) -> int:
    # python-osc builds the message: a one-off send, where its cost (bench/bench_codec.py) does not matter.
    from pythonosc.osc_message_builder import BuildError, OscMessageBuilder

    transport, host, port = choose_bridge(args.to)
    if not args.address.startswith("/"):
        raise TrainsoundError(f"OSC address must start with '/', got {args.address!r}")
    try:
        values = send_values(args.address, args.args)
    except ValueError as err:
        raise TrainsoundError(f"bad argument: {err}") from err
    problem = protocol_problem(args.address, values)
    if problem is not None:  # a usage error: the bridge would count and drop it
        print(f"trainsound: error: {problem} (not sent: the bridge would drop it)", file=sys.stderr)
        return EXIT_USAGE
    if not args.address.startswith(("/nn/", CONTROL_PREFIX)):
        log.warning("%s is outside /nn/ and %s: a bridge ignores it (sent, for other OSC servers)",
                    args.address, CONTROL_PREFIX)
    builder = OscMessageBuilder(address=args.address)
    for v in values:
        builder.add_arg(v)
    try:
        data = builder.build().dgram
    except BuildError as err:
        raise TrainsoundError(f"cannot encode {args.address} {values}: {err}") from err
    try:
        if transport == "tcp":
            with socket.create_connection((host, port), timeout=5.0) as conn:
                conn.sendall(slip_encode(data))
        else:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(data, (host, port))
    except OSError as err:
        raise TrainsoundError(f"cannot send to {transport}://{host}:{port}: {err.strerror or err}") from err
    return 0


def add_parser(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "send",
        help="send one OSC message (a shell one-liner client)",
        description="Send one OSC message, e.g. trainsound send /nn/run1/loss -inf. Words are typed by what "
        "the /nn address expects: step and epoch integers, an event's name a string (nan too), every "
        "other value a float (3, -1e-3, inf, -inf, nan). Other addresses: int, float, else string. "
        "Force a type with i:, f: or s: (s:nan, i:-3).",
    )
    # Instance attribute of argparse (3.11–3.13): widen what counts as a negative number, not an option.
    s._negative_number_matcher = NEGATIVE_NUMBER
    s.add_argument("address")
    s.add_argument("args", nargs="*")
    s.add_argument("--to", metavar="HOST:PORT", help=TO_HELP)
    s.set_defaults(func=cmd_send)
