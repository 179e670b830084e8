"""OSCQuery: the bridge's address space for OSC tools, over HTTP and WebSocket on one port, found by zeroconf.

The same stack as the listening page (:mod:`.server`): aiohttp on a thread of its own with its own event
loop, reading the :class:`~.feed.Feed` the receive thread fills (a copy, no lock), so no OSC tool ever
holds the receive loop. Its own small app on its own port, because OSCQuery clients expect ``GET /`` to
return JSON, where the page serves HTML.

- ``GET /path`` → the node and everything under it (:mod:`.oscquery_tree`); ``?ATTR`` → one attribute;
  ``?HOST_INFO`` → where the OSC port is; an unknown path → 404.
- A WebSocket on the same port: ``{"COMMAND": "LISTEN", "DATA": "/nn/run/loss"}`` streams that address's
  messages as binary OSC frames (the message as the bridge received it; at most one per poll, the
  latest), ``IGNORE`` stops it; ``PATH_ADDED``/``PATH_REMOVED``/``PATH_CHANGED`` tell when runs and
  layers appear or are forgotten.
- ``_oscjson._tcp`` is advertised with python-zeroconf on the interface served (loopback: loopback only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import threading
from typing import Any

from aiohttp import WSMsgType, web

from ..ratelog import RateLimited, escape
from ..receive.sockets import ListenError
from .feed import Feed
from .oscquery_tree import attribute, find, host_info, namespace, path_changes

log = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The service type the OSCQuery proposal names for zeroconf.
SERVICE_TYPE = "_oscjson._tcp.local."
_limited = RateLimited(log)

#: How often the pump looks at the feed, per second (a look that finds nothing new costs one comparison).
POLL_HZ = 50.0
#: WebSocket clients at once; more are refused with 503 (each costs a little work per poll).
MAX_CLIENTS = 32
#: Addresses one client may LISTEN to.
MAX_LISTENS = 4096
#: A client that does not take a frame within this time misses it (it gets the next one), never holds the pump.
SEND_TIMEOUT = 0.5


class Client:
    """One WebSocket client: what it listens to, and the event it was last sent for each address."""

    def __init__(self, ws: web.WebSocketResponse, peer: str) -> None:
        self.ws, self.peer = ws, peer
        self.listens: dict[str, object] = {}
        """Address → the event last sent (``None``: nothing yet)."""


class OscQueryServer:
    """Serves the namespace on ``(host, port)`` from a daemon thread; :meth:`start` returns once it listens."""

    def __init__(self, feed: Feed, host: str, port: int, nets: tuple[Network, ...], name: str,
                 osc: tuple[str, int], advertise: bool) -> None:
        self.feed = feed
        self.host, self.port = host, port
        self.nets = nets
        self.name = name or f"trainsound on {socket.gethostname()}"
        self.osc = osc
        self.advertise = advertise
        self.clients: set[Client] = set()
        self.frames = 0
        self.skipped = 0
        self.refused = 0
        self.advertised: str | None = None
        """The zeroconf instance name once registered (it may have been renamed to stay unique)."""
        self._hostnames = {"localhost", socket.gethostname().lower(), f"{socket.gethostname().lower()}.local"}
        self._zc: Any = None
        self._info: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # -- lifecycle (called from the daemon's thread) --------------------------------
    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="trainsound-oscquery", daemon=True)
        self._thread.start()
        ready.wait(10.0)
        if self._error is not None:
            raise ListenError(f"cannot serve OSCQuery on {self.host}:{self.port}: {self._error}") from self._error

    def stop(self) -> None:
        loop, self._loop = self._loop, None  # a second stop does nothing
        if loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5.0)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5.0)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except OSError as err:
            self._error = err
            ready.set()
            return
        ready.set()
        tasks = [loop.create_task(self._pump())]
        if self.advertise:
            tasks.append(loop.create_task(self._register()))
        try:
            loop.run_forever()
        finally:
            for t in tasks:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/{path:.*}", self._get)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # tests ask for a free port
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                self.port = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._zc is not None:
            with contextlib.suppress(Exception):
                if self._info is not None and self.advertised:
                    await self._zc.async_unregister_service(self._info)
                await self._zc.async_close()
        for c in list(self.clients):
            with contextlib.suppress(Exception):
                await c.ws.close(code=1001, message=b"bridge stopping")
        if self._runner is not None:
            await self._runner.cleanup()

    # -- zeroconf ------------------------------------------------------------------
    async def _register(self) -> None:
        """Advertise ``_oscjson._tcp`` on the served interface; a network with no multicast costs one log line."""
        from zeroconf import InterfaceChoice, ServiceInfo
        from zeroconf.asyncio import AsyncZeroconf

        host = self.host
        wildcard = host in ("0.0.0.0", "::", "")
        addresses = _own_addresses() if wildcard else [host]
        label = "".join(c if c.isalnum() else "-" for c in socket.gethostname())[:40] or "host"
        try:
            self._zc = AsyncZeroconf(interfaces=InterfaceChoice.All if wildcard else [host])
            self._info = ServiceInfo(
                SERVICE_TYPE, f"{self.name}.{SERVICE_TYPE}", port=self.port, parsed_addresses=addresses,
                server=f"{label}-trainsound-{self.port}.local.", properties={"txtvers": "1"})
            await self._zc.async_register_service(self._info, allow_name_change=True)
        except Exception as err:  # zeroconf's errors are many (OSError, its own); the HTTP side keeps serving
            log.error("OSCQuery: could not advertise %s by zeroconf on %s (%s: %s); serving %s without it",
                      SERVICE_TYPE, host, type(err).__name__, escape(err), self.url)
            return
        self.advertised = self._info.name
        log.info("OSCQuery: advertised %r as %s on %s", self._info.name, SERVICE_TYPE, ", ".join(addresses))

    # -- access --------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self._peer_ok(request.remote):
            self.refused += 1
            _limited.warning("peer", "OSCQuery: refused %s from %s (not in the oscquery allowlist)",
                             request.path, request.remote)
            raise web.HTTPForbidden(text="trainsound: not allowed from this address\n")
        if not self._host_ok(request.host):
            # A DNS-rebinding page names the server by a name of its own: only IP literals and our names pass.
            self.refused += 1
            _limited.warning("host", "OSCQuery: refused %s from %s (Host header %r)", request.path, request.remote,
                             request.host)
            raise web.HTTPForbidden(text="trainsound: unexpected Host header\n")
        response: web.StreamResponse = await handler(request)
        return response

    def _peer_ok(self, peer: str | None) -> bool:
        try:
            addr = ipaddress.ip_address((peer or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in n for n in self.nets)

    def _host_ok(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
        name = name.strip("[]").rstrip(".").lower()
        if name in self._hostnames or name.endswith(f"-trainsound-{self.port}.local"):
            return True
        try:
            ipaddress.ip_address(name.split("%")[0])
        except ValueError:
            return False
        return True

    # -- HTTP ----------------------------------------------------------------------
    async def _get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._ws(request)
        query = request.query_string.split("&", 1)[0].split("=", 1)[0]
        if query == "HOST_INFO":
            return _json(host_info(self.name, self.osc[0], self.osc[1], self.host))
        events = self.feed.copy().events
        if request.path.rstrip("/"):  # a subtree is built from its own addresses only (a superset: run3, run30)
            prefix = request.path.rstrip("/")
            events = {a: ev for a, ev in events.items() if a.startswith(prefix)}
        tree = namespace(events)
        node = find(tree, request.path)
        if node is None:
            raise web.HTTPNotFound(text=f"trainsound: no OSC node at {request.path}\n")
        if not query:
            return _json(node)
        status, body = attribute(node, query)
        if status == 204:
            return web.Response(status=204)
        if status == 400:
            raise web.HTTPBadRequest(text=f"trainsound: attribute {query!r} is not served here\n")
        return _json(body)

    # -- WebSocket -----------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not self._host_ok(origin.split("://", 1)[-1].split("/", 1)[0]):
            # A page elsewhere in the user's browser may not read the namespace; OSC tools send no Origin.
            self.refused += 1
            _limited.warning("origin", "OSCQuery: refused a WebSocket from %s with origin %r", request.remote, origin)
            raise web.HTTPForbidden(text="trainsound: cross-origin WebSocket refused\n")
        if len(self.clients) >= MAX_CLIENTS:
            self.refused += 1
            _limited.warning("full", "OSCQuery: refused a WebSocket from %s (%d clients already)", request.remote,
                             MAX_CLIENTS)
            raise web.HTTPServiceUnavailable(text="trainsound: too many OSCQuery clients\n")
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=1 << 16)
        await ws.prepare(request)
        client = Client(ws, str(request.remote))
        self.clients.add(client)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._command(client, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    _limited.warning("binary", "OSCQuery: %s sent OSC over the WebSocket; it is not taken here: "
                                     "send it to the bridge's UDP port %d", client.peer, self.osc[1])
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.clients.discard(client)
        return ws

    def _command(self, client: Client, text: str) -> None:
        """``LISTEN``/``IGNORE`` a path; anything else is named in a (rate-limited) warning, never dropped silently."""
        try:
            msg = json.loads(text)
            command, path = msg["COMMAND"], msg.get("DATA")
        except (ValueError, TypeError, KeyError) as err:
            _limited.warning("bad", "OSCQuery: %s sent a message that is not {COMMAND, DATA} JSON (%s): %.80r",
                             client.peer, err, text)
            return
        if command in ("LISTEN", "IGNORE") and not (isinstance(path, str) and path.startswith("/")):
            _limited.warning("path", "OSCQuery: %s: %s needs an OSC address in DATA, got %.80r", client.peer,
                             command, path)
        elif command == "LISTEN":
            if path not in client.listens and len(client.listens) >= MAX_LISTENS:
                _limited.warning("listens", "OSCQuery: %s listens to %d addresses already; LISTEN %s refused",
                                 client.peer, MAX_LISTENS, path)
                return
            client.listens.setdefault(path, None)
        elif command == "IGNORE":
            client.listens.pop(path, None)
        else:
            _limited.warning("command", "OSCQuery: %s sent an unknown COMMAND %.40r (LISTEN and IGNORE are taken)",
                             client.peer, command)

    # -- the pump --------------------------------------------------------------------
    async def _pump(self) -> None:
        seq = -1
        known: set[str] | None = None
        while True:
            await asyncio.sleep(1.0 / POLL_HZ)
            if self.feed.seq == seq or not self.clients:
                if not self.clients:
                    known = None  # the next client starts from the namespace it will GET
                continue
            copy = self.feed.copy()
            seq = copy.seq
            events = copy.events
            if known is None:
                known = set(events)
            elif events.keys() != known:
                now = set(events)
                for notice in path_changes(known, now):
                    await self._send_all(json.dumps(notice))
                known = now
            for client in list(self.clients):
                for path, last in list(client.listens.items()):  # a LISTEN may arrive while we send
                    ev = events.get(path)
                    if ev is not None and ev is not last and ev.raw:
                        client.listens[path] = ev
                        await self._send(client, ev.raw)

    async def _send_all(self, text: str) -> None:
        for client in list(self.clients):
            await self._send(client, text)

    async def _send(self, client: Client, data: str | bytes) -> None:
        try:
            if isinstance(data, bytes):
                await asyncio.wait_for(client.ws.send_bytes(data), SEND_TIMEOUT)
                self.frames += 1
            else:
                await asyncio.wait_for(client.ws.send_str(data), SEND_TIMEOUT)
        except (TimeoutError, ConnectionError, RuntimeError):
            self.skipped += 1

    def health(self) -> dict[str, Any]:
        return {"url": self.url, "advertised": self.advertised, "clients": len(self.clients),
                "listening": sum(len(c.listens) for c in self.clients), "frames": self.frames,
                "skipped": self.skipped, "refused": self.refused}


def _json(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body, ensure_ascii=False), content_type="application/json")


def _own_addresses() -> list[str]:
    """Every address of this machine but loopback (what a wildcard listen is reachable at), for zeroconf."""
    import ifaddr  # zeroconf's own dependency

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            a = ipaddress.ip_address(addr.split("%")[0])
            if not a.is_loopback and not a.is_link_local:
                out.append(str(a))
    return out or ["127.0.0.1"]
