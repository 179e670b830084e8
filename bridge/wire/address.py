"""Where the bridge is — the one rule for every client and command: ``to`` (an argument or ``--to``), else
``$TRAINSOUND_ADDR``, else ``127.0.0.1:9150``; ``host:port``, ``[v6addr]:port``, with an optional ``udp://`` or
``tcp://``. Standard library only: the training side (:mod:`trainsound.transport`) and the bridge's
commands share it.
"""

from __future__ import annotations

import os
from typing import Final

from ..errors import AddressError
from .protocol import DEFAULT_HOST, DEFAULT_PORT

#: ``host:port`` that overrides the default target of every client (an explicit argument wins).
ENV_ADDR: Final = "TRAINSOUND_ADDR"
#: ``--to``'s help in every command that talks to a running bridge (``send``, ``status``).
TO_HELP: Final = (f"the bridge's address, HOST:PORT or tcp://HOST:PORT (default: ${ENV_ADDR}, else "
                  f"{DEFAULT_HOST}:{DEFAULT_PORT})")


def split_transport(text: str, what: str = ENV_ADDR) -> tuple[str, str]:
    """``"tcp://host:port"`` → ``("tcp", "host:port")``; no scheme means UDP.

    >>> split_transport("tcp://127.0.0.1:9150"), split_transport("localhost:9150")
    (('tcp', '127.0.0.1:9150'), ('udp', 'localhost:9150'))
    """
    scheme, sep, rest = text.strip().partition("://")
    if not sep:
        return "udp", text
    if scheme not in ("udp", "tcp"):
        raise AddressError(f"{what} scheme must be udp:// or tcp://, got {text!r}")
    return scheme, rest


def parse_addr(text: str, what: str = ENV_ADDR) -> tuple[str, int]:
    """Parse ``host:port`` (``[v6addr]:port`` for IPv6; a ``udp://`` or ``tcp://`` scheme is allowed).

    >>> parse_addr("[::1]:9150")
    ('::1', 9150)
    >>> parse_addr("nonsense")
    Traceback (most recent call last):
    ...
    trainsound.bridge.errors.AddressError: TRAINSOUND_ADDR must be host:port, got 'nonsense'
    """
    host, sep, port = split_transport(text, what)[1].strip().rpartition(":")
    host = host.strip("[]") or (DEFAULT_HOST if sep else "")  # ":9150" means this machine
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"{what} must be host:port, got {text!r}")
    return host, int(port)


def choose_bridge(to: str | None = None, what: str = "--to") -> tuple[str, str, int]:
    """Which bridge to talk to, the one rule for every client and command: ``to`` (a ``--to`` option or an
    argument), else ``$TRAINSOUND_ADDR``, else ``127.0.0.1:9150`` → ``(transport, host, port)``.

    >>> choose_bridge("tcp://10.0.0.2:9000")
    ('tcp', '10.0.0.2', 9000)
    >>> choose_bridge("10.0.0.2", "--to")
    Traceback (most recent call last):
    ...
    trainsound.bridge.errors.AddressError: --to must be host:port, got '10.0.0.2'
    """
    if to is None:
        to, what = os.environ.get(ENV_ADDR) or f"{DEFAULT_HOST}:{DEFAULT_PORT}", ENV_ADDR
    transport = split_transport(to, what)[0]
    return (transport, *parse_addr(to, what))
