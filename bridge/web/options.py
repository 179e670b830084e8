"""The ``[web]`` table, ``--web``/``--web-allow``, and who may open the page.

Loopback (the default, and what ``ssh -L 9151:127.0.0.1:9151 trainhost`` reaches) needs nothing more.
Beyond loopback the page is refused unless an allowlist was given on purpose (``--web-allow CIDR`` or
``[web].allow``), and then every request must carry the random token the bridge logs in the URL.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, replace

from ..config import Config, output_options
from ..errors import ConfigError
from ..receive.sockets import is_loopback
from ..table import Table, parse_hostport

DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 9151
LOOPBACK_NETS = ("127.0.0.0/8", "::1/128")
#: Points kept per stream for a page that joins late (the page keeps its own, as many).
DEFAULT_HISTORY = 600
#: How often the web thread looks at the feed, per second: 100 Hz keeps the page within ~10 ms of the bridge
#: (a look that finds nothing new costs one comparison).
DEFAULT_POLL_HZ = 100.0


@dataclass(frozen=True)
class WebOptions:
    """The ``[web]`` config table."""

    listen: tuple[str, int] | None = None
    """Where the page is served; ``None``: no page (the default)."""
    allow: tuple[str, ...] = ()
    """Networks allowed to open the page beyond loopback (they also need the token)."""
    history: int = DEFAULT_HISTORY
    poll_hz: float = DEFAULT_POLL_HZ


def parse_web_listen(text: str, key: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[v6]:PORT`` (host defaults to 127.0.0.1).

    >>> parse_web_listen("9200", "--web"), parse_web_listen("0.0.0.0:9151", "--web")
    (('127.0.0.1', 9200), ('0.0.0.0', 9151))
    """
    text = text.strip()
    if text.isdigit():
        text = f":{text}"
    return parse_hostport(text, key, DEFAULT_WEB_HOST)


def check_networks(nets: tuple[str, ...], key: str) -> tuple[str, ...]:
    for i, net in enumerate(nets):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as err:
            raise ConfigError(f"{key}[{i}] must be a network in CIDR form, got {net!r}") from err
    return nets


def section(t: Table) -> WebOptions:
    """Validate the ``[web]`` table (the config's literal registry calls this)."""
    listen = t.string("listen", "")
    opts = WebOptions(
        listen=parse_web_listen(listen, "web.listen") if listen else None,
        allow=check_networks(t.strings("allow", ()), "web.allow"),
        history=t.integer("history", DEFAULT_HISTORY, 10, 100_000),
        poll_hz=t.number("poll_hz", DEFAULT_POLL_HZ, 1.0, 200.0),
    )
    t.finish()
    return opts


@dataclass(frozen=True)
class Access:
    """Who may open the page: loopback always; the allowlist with the token when listening beyond it."""

    nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    token: str | None
    """``None`` on loopback: nobody else can reach the port."""

    @classmethod
    def for_listen(cls, host: str, allow: tuple[str, ...]) -> Access:
        """The rules for serving on ``host``.

        Raises:
            ConfigError: beyond loopback with no allowlist (naming the flag and the key).
        """
        if is_loopback(host):
            return cls(tuple(ipaddress.ip_network(n) for n in LOOPBACK_NETS), None)
        if not allow:
            raise ConfigError(
                f"refusing to serve the web page on {host}, which is not a loopback address, without an "
                "allowlist: give --web-allow CIDR (e.g. --web-allow 192.168.1.0/24) or set [web].allow, "
                "or keep it on loopback and use ssh -L 9151:127.0.0.1:9151"
            )
        nets = tuple(ipaddress.ip_network(n, strict=False) for n in (*LOOPBACK_NETS, *allow))
        return cls(nets, secrets.token_urlsafe(18))

    def allows_peer(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            addr = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in n for n in self.nets)

    def token_ok(self, given: str | None) -> bool:
        """Constant-time token check; always true on loopback."""
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def with_web(cfg: Config, listen: str | None, allow: list[str] | None) -> Config:
    """A copy with ``--web``/``--web-allow`` applied over the ``[web]`` table (kept with the file for reloads)."""
    cur: WebOptions = output_options(cfg, "web", WebOptions())
    where = parse_web_listen(listen, "--web") if listen else cur.listen
    nets = check_networks(tuple(allow), "--web-allow") if allow else cur.allow
    if where is None:
        raise ConfigError("--web-allow needs --web [HOST:]PORT (or [web].listen in the config)")
    return replace(cfg, outputs={**cfg.outputs, "web": replace(cur, listen=where, allow=nets)})


def require_server(cfg: Config) -> None:
    """Refuse to start a bridge asked for the page (``--web`` or ``[web].listen``) without aiohttp, as
    ``--link`` refuses without aalink: a service must not run on silently with no page.

    Raises:
        ConfigError: the page is asked for and aiohttp cannot be imported (one line naming the extra).
    """
    opts: WebOptions = output_options(cfg, "web", WebOptions())
    if opts.listen is None:
        return
    try:
        import aiohttp  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"--web (or [web].listen) needs the web extra, and aiohttp cannot be imported ({err}): "
            "pip install '.[web]' in the clone (or pip install 'trainsound[web]')"
        ) from None


def add_web_args(parser: argparse.ArgumentParser) -> None:
    """``trainsound bridge``'s ``--web`` and ``--web-allow`` (applied by :func:`with_web`)."""
    w = parser.add_argument_group("web page")
    w.add_argument(
        "--web",
        nargs="?",
        const="127.0.0.1:9151",
        metavar="[HOST:]PORT",
        help="serve the live listening page (default 127.0.0.1:9151; open it through ssh -L 9151:127.0.0.1:9151)",
    )
    w.add_argument(
        "--web-allow",
        action="append",
        metavar="CIDR",
        help="let this network open the page (repeatable); required to serve it beyond loopback, with a token",
    )
