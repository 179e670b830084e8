"""The ``[oscquery]`` table, ``--oscquery``/``--oscquery-allow``, and who may browse the namespace.

Loopback by default. Beyond loopback the same rule as the web page (:mod:`.options`): refused unless an
allowlist was given on purpose. There is no token: OSC tools that find the server through zeroconf
cannot carry one, and nothing can be changed through OSCQuery (the namespace and its values are read
only), so the allowlist of peer networks is the gate.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..config import Config, output_options
from ..errors import ConfigError, TrainsoundError
from ..receive.sockets import is_loopback
from ..table import Table
from .feed import Feed
from .options import LOOPBACK_NETS, check_networks, parse_web_listen

log = logging.getLogger(__name__)

DEFAULT_OSCQUERY_PORT = 9152
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class OscQueryOptions:
    """The ``[oscquery]`` config table."""

    listen: tuple[str, int] | None = None
    """Where the namespace is served (HTTP and WebSocket on one port); ``None``: not served (the default)."""
    allow: tuple[str, ...] = ()
    """Networks allowed beyond loopback."""
    name: str = ""
    """The zeroconf instance name and ``HOST_INFO``'s ``NAME``; ``""``: ``trainsound on <hostname>``."""
    zeroconf: bool = True
    """Advertise ``_oscjson._tcp`` (needs the ``oscquery`` extra's zeroconf)."""


def section(t: Table) -> OscQueryOptions:
    """Validate the ``[oscquery]`` table (the config's literal registry calls this)."""
    listen = t.string("listen", "")
    name = t.string("name", "")
    if len(name.encode()) > 63:  # a DNS label: the most an mDNS instance name can hold
        raise ConfigError(f"oscquery.name must be at most 63 UTF-8 bytes, got {len(name.encode())}")
    opts = OscQueryOptions(
        listen=parse_web_listen(listen, "oscquery.listen") if listen else None,
        allow=check_networks(t.strings("allow", ()), "oscquery.allow"),
        name=name,
        zeroconf=t.boolean("zeroconf", True),
    )
    t.finish()
    return opts


def networks_for(host: str, allow: tuple[str, ...]) -> tuple[Network, ...]:
    """Who may connect when serving on ``host``: loopback, plus ``allow`` beyond it.

    >>> [str(n) for n in networks_for("127.0.0.1", ())]
    ['127.0.0.0/8', '::1/128']

    Raises:
        ConfigError: beyond loopback with no allowlist (naming the flag and the key).
    """
    if not is_loopback(host) and not allow:
        raise ConfigError(
            f"refusing to serve OSCQuery on {host}, which is not a loopback address, without an allowlist: "
            "give --oscquery-allow CIDR (e.g. --oscquery-allow 192.168.1.0/24) or set [oscquery].allow"
        )
    nets = LOOPBACK_NETS if is_loopback(host) else (*LOOPBACK_NETS, *allow)
    return tuple(ipaddress.ip_network(n, strict=False) for n in nets)


def with_oscquery(cfg: Config, listen: str | None, allow: list[str] | None) -> Config:
    """A copy with ``--oscquery``/``--oscquery-allow`` over the ``[oscquery]`` table (kept for reloads)."""
    cur: OscQueryOptions = output_options(cfg, "oscquery", OscQueryOptions())
    where = parse_web_listen(listen, "--oscquery") if listen else cur.listen
    nets = check_networks(tuple(allow), "--oscquery-allow") if allow else cur.allow
    if where is None:
        raise ConfigError("--oscquery-allow needs --oscquery [HOST:]PORT (or [oscquery].listen in the config)")
    return replace(cfg, outputs={**cfg.outputs, "oscquery": replace(cur, listen=where, allow=nets)})


def add_oscquery_args(parser: argparse.ArgumentParser) -> None:
    """``trainsound bridge``'s ``--oscquery`` and ``--oscquery-allow`` (applied by :func:`with_oscquery`)."""
    g = parser.add_argument_group("OSCQuery (docs/oscquery.md)")
    g.add_argument(
        "--oscquery",
        nargs="?",
        const=f"127.0.0.1:{DEFAULT_OSCQUERY_PORT}",
        metavar="[HOST:]PORT",
        help=f"serve the OSC namespace to OSCQuery tools and advertise it by zeroconf "
        f"(default 127.0.0.1:{DEFAULT_OSCQUERY_PORT}; needs trainsound[oscquery])",
    )
    g.add_argument(
        "--oscquery-allow",
        action="append",
        metavar="CIDR",
        help="let this network browse the namespace (repeatable); required to serve it beyond loopback",
    )


def start_oscquery(cfg: Config, feed: Feed, osc: tuple[str, int], on_error: Callable[[], None]) -> Any:
    """Serve OSCQuery if ``[oscquery].listen`` (or ``--oscquery``) asks for it: the running server, else ``None``.

    ``osc`` is where the bridge's UDP socket is bound (``HOST_INFO``'s ``OSC_PORT``); ``on_error`` is called
    before an error is raised (the daemon shuts down what it started).

    Raises:
        ConfigError: a library of the ``oscquery`` extra is missing (one line naming the extra), or the
            address is beyond loopback with no allowlist.
        ListenError: the port cannot be bound.
    """
    opts: OscQueryOptions = output_options(cfg, "oscquery", OscQueryOptions())
    if opts.listen is None:
        return None
    try:
        need = ["aiohttp", *(["zeroconf"] if opts.zeroconf else [])]
        missing = [m for m in need if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"--oscquery needs {' and '.join(missing)}: pip install 'trainsound[oscquery]'")
        host, port = opts.listen
        nets = networks_for(host, opts.allow)
        from .oscquery import OscQueryServer

        server = OscQueryServer(feed, host, port, nets, opts.name, osc, opts.zeroconf)
        server.start()
    except TrainsoundError:
        on_error()
        raise
    log.info("OSCQuery: %s (OSC port %d)", server.url, osc[1])
    return server
