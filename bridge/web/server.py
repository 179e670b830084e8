"""The listening page's server: aiohttp on its own thread with its own event loop.

aiohttp serves HTTP and WebSockets from one well-kept library with no other server process; its event
loop runs on a thread of its own, so the receive loop never waits for a browser. That thread polls the
:class:`~.feed.Feed` ``poll_hz`` times a second, sends each connected page one JSON delta with the rows
that changed (and new alarms), and every half second the status the daemon publishes from the receive
thread. A slow page loses deltas (it is sent the next one), never holds the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from ..config import Config
from ..mapped import Mapped
from ..receive.sockets import ListenError
from ..wire.protocol import Event
from .feed import Feed, FeedCopy, finite_or_none
from .gate import HEADER_TIMEOUT, Gate
from .options import Access
from .snapshot import build, sine_params

log = logging.getLogger(__name__)

STATIC = resources.files("trainsound.bridge.web") / "static"
ASSETS = {
    "app.js": "text/javascript",
    "audio.js": "text/javascript",
    "plot.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
TOKEN_COOKIE = "trainsound_token"
#: A page that does not take a delta within this time is skipped for that delta.
SEND_TIMEOUT = 0.5
STATUS_INTERVAL = 0.5
#: Bytes a page may leave unread in its connection's buffer: beyond, it is sent nothing (counted as skipped)
#: until it has read them, then a fresh hello; memory per page stays bounded whatever the page does.
SEND_BUFFER = 1 << 20
#: A page that stays over :data:`SEND_BUFFER` this long is closed (``closed_slow``): it reconnects.
SLOW_CLOSE = 10.0


class WebServer:
    """Serves the page on ``(host, port)`` from a daemon thread; :meth:`start` returns once it listens."""

    def __init__(self, feed: Feed, config: Callable[[], Config], host: str, port: int, access: Access,
                 history: int, poll_hz: float) -> None:
        self.feed = feed
        self.config = config
        self.host, self.port = host, port
        self.access = access
        self.history = history
        self.poll = 1.0 / poll_hz
        self._status_text = "{}"
        self.clients: set[web.WebSocketResponse] = set()
        self.sent = 0
        self.skipped = 0
        self.closed_slow = 0
        self.gate = Gate(access)
        # Pages behind on reading: page → when it first fell behind (a fresh hello when it catches up).
        self._behind: dict[web.WebSocketResponse, float] = {}
        self._transport: dict[web.WebSocketResponse, asyncio.Transport] = {}
        self._server: asyncio.Server | None = None
        self._hist: dict[str, deque[list[Any]]] = {}
        # The pump's bookkeeping (its thread only): voice → address, runs in first-seen order.
        self._voice_at: dict[tuple[int, tuple[str, ...]], str] = {}
        self._order: dict[str, int] = {}
        self._next_sweep = 0.0
        self._alarm_seq = 0  # the last alarm sent
        self._first = True
        feed.journal()  # what changed, for the pump (its thread only)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The page's address with its token (logged at start, never in status replies)."""
        return self.bare_url + (f"?token={self.access.token}" if self.access.token else "")

    @property
    def bare_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def status(self) -> dict[str, Any]:
        """The daemon's latest status, as the page gets it."""
        result: dict[str, Any] = json.loads(self._status_text)
        return result

    @status.setter
    def status(self, value: dict[str, Any]) -> None:
        # Frozen into text on the setter's (receive) thread: a status holds live objects (the engine's
        # counters), and the page must see every counter as of one moment, as `trainsound status` does.
        self._status_text = json.dumps(value)

    # -- lifecycle (called from the daemon's thread) --------------------------------
    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="trainsound-web", daemon=True)
        self._thread.start()
        ready.wait(10.0)
        if self._error is not None:
            raise ListenError(f"cannot serve the web page on {self.host}:{self.port}: {self._error}") from self._error

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):
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
        pump = loop.create_task(self._pump())
        try:
            loop.run_forever()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                loop.run_until_complete(pump)
            loop.close()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/favicon.ico", self._favicon)
        app.router.add_get("/static/{name}", self._asset)
        app.router.add_get("/ws", self._ws)
        # The keep-alive timer starts at the connection and trickled bytes do not reset it: a header timeout.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                    keepalive_timeout=HEADER_TIMEOUT, logger=self.gate.parse_log())
        await self._runner.setup()
        assert self._runner.server is not None
        loop = asyncio.get_running_loop()
        # Our own listening socket, so that the gate sees each connection before aiohttp parses a byte.
        self._server = await loop.create_server(self.gate.factory(self._runner.server), self.host, self.port,
                                                reuse_address=True)
        if self.port == 0 and self._server.sockets:  # tests ask for a free port
            self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for ws in list(self.clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1001, message=b"bridge stopping"), 1.0)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- access --------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.gate.spoke(request.transport)
        if not self.access.allows_peer(request.remote):  # the gate refused it already; kept as a second lock
            self.gate.refuse("not_allowed", "refused %s from %s (not in the web allowlist)", request.path,
                             request.remote)
            raise web.HTTPForbidden(text="trainsound: not allowed from this address\n")
        given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE)
        if not self.access.token_ok(given):
            self.gate.refuse("bad_token", "refused %s from %s (no valid token)", request.path, request.remote)
            raise web.HTTPForbidden(text="trainsound: this page needs the token in the URL the bridge logged\n")
        # The header itself, never aiohttp's fallback to the socket's address (a request with no Host).
        host = request.headers.get("Host", "")
        if self.access.token is None and host.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost", "[::1]"):
            # On loopback the Host header must be loopback too: a DNS-rebinding page cannot reach us.
            self.gate.refuse("bad_host", "refused %s from %s (Host header %r)", request.path, request.remote,
                             host[:100])
            raise web.HTTPForbidden(text="trainsound: unexpected Host header\n")
        response: web.StreamResponse = await handler(request)
        return response

    # -- HTTP ----------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html")
        token = request.query.get("token")
        if token and self.access.token:
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'"
        )
        return resp

    async def _favicon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=(STATIC / "favicon.svg").read_bytes(), content_type="image/svg+xml")

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = ASSETS.get(name)
        if kind is None:
            raise web.HTTPNotFound(text=f"trainsound: no asset {name!r}\n")
        return web.Response(body=(STATIC / name).read_bytes(), content_type=kind)

    # -- WebSocket -----------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin != f"{request.scheme}://{request.headers.get('Host', '')}":
            self.gate.refuse("bad_origin", "refused a WebSocket from %s with origin %r", request.remote,
                             (origin or "")[:100])
            raise web.HTTPForbidden(text="trainsound: cross-origin WebSocket refused\n")
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=1 << 16)
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws
        await ws.send_str(json.dumps(self._hello()))
        self.clients.add(ws)
        self._transport[ws] = transport
        self.feed.readers = len(self.clients)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
                if msg.type == WSMsgType.TEXT:  # same origin and token as the page: its one control
                    self._request(msg.data, request.remote)
        finally:
            self.clients.discard(ws)
            self._transport.pop(ws, None)
            self._behind.pop(ws, None)
            self.feed.readers = len(self.clients)
        return ws

    def _request(self, text: str, peer: str | None) -> None:
        """``{"forward": [run, group(, seconds)]}`` or ``{"forward": []}`` (docs/web.md); else one log line."""
        try:
            args = json.loads(text)["forward"]
            ok = isinstance(args, list) and len(args) <= 3 and all(isinstance(a, (str, int, float)) for a in args)
        except (ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            log.warning("web: ignored a page message from %s: %.80r (expected {\"forward\": [run, group]})", peer, text)
            return
        self.feed.requests.append(tuple(float(a) if isinstance(a, int) else a for a in args))  # receive thread

    def _hello(self) -> dict[str, Any]:
        cfg = self.config()
        msg = build(self.feed.copy(), cfg)
        for run in msg["runs"]:
            for row in run["rows"]:
                row["history"] = list(self._hist.get(row["id"], ()))
        msg.update(type="hello", sine=sine_params(cfg), status=self.status, history=self.history)
        return msg

    # -- the pump --------------------------------------------------------------------
    async def _pump(self) -> None:
        seq = -1
        status_sent: str | None = None
        next_status = 0.0
        while True:
            await asyncio.sleep(self.poll)
            if self.feed.seq != seq:
                seq = self.feed.seq
                msg = self._delta(bool(self.clients))
                if msg is not None and (msg["runs"] or msg["alarms"] or "live_runs" in msg):
                    await self._broadcast(json.dumps(msg))
            now = time.monotonic()
            if now >= next_status and self._status_text is not status_sent and self.clients:
                status_sent = self._status_text
                next_status = now + STATUS_INTERVAL
                await self._broadcast(f'{{"type": "status", "status": {status_sent}}}')

    def _delta(self, clients: bool = True) -> dict[str, Any] | None:
        """What changed since the last call (:meth:`.Feed.changed`; each ``dict.get`` atomic), as one message.
        Work in proportion to what changed, except a once-a-second pass over everything (the runs' order,
        histories of forgotten streams). With no page open only the histories are kept: no message is built."""
        feed = self.feed
        taken = feed.changed()
        events, mapped = feed.events, feed.mapped
        if taken is None or self._first:  # the journal overflowed, or this is the first call: everything is news
            taken = list(events)
            self._first = False
        changed = {a for a in taken if isinstance(a, str)}
        voice_at = self._voice_at
        for a in changed:
            for m in mapped.get(a, ()):
                voice_at[(m.rule, m.stream)] = a
        for k in taken:
            if not isinstance(k, str) and (at := voice_at.get(k)) is not None:  # released later by a rate limit
                changed.add(at)
        alarms = [a for a in list(feed.alarms) if a.seq > self._alarm_seq]
        if alarms:
            self._alarm_seq = alarms[-1].seq
        keep = set(changed)
        found: dict[str, Event] = {}
        for a in changed:
            ev = events.get(a)
            if ev is None:  # shed, or forgotten since
                continue
            found[a] = ev
            self._order.setdefault(ev.run, len(self._order))
            keep.add(f"/nn/{ev.run}/step")
            if ev.values:
                h = self._hist.get(a)
                if h is None:
                    h = self._hist[a] = deque(maxlen=self.history)
                h.append([round(ev.t, 3), finite_or_none(ev.values[0])])
        now = time.monotonic()
        if not clients:
            if now >= self._next_sweep:
                self._sweep()
            return None
        for a in keep - changed:
            if (ev := events.get(a)) is not None:
                found[a] = ev
        # Runs in their first-seen order, rows by address: the page appends what it has not seen in this order.
        ordered = sorted(found, key=lambda a: (self._order.get(found[a].run, len(self._order)), a))
        sent_mapped = {a: ms for a in ordered if (ms := mapped.get(a)) is not None}
        released: dict[tuple[int, tuple[str, ...]], Mapped] = {}
        for ms in sent_mapped.values():
            for m in ms:
                if (r := feed.released.get((m.rule, m.stream))) is not None:
                    released[(m.rule, m.stream)] = r
        part = FeedCopy(feed.seq, {a: found[a] for a in ordered}, sent_mapped, released, alarms, feed.alarm_count)
        msg = build(part, self.config(), self._order)
        msg["gone"] = []
        if now >= self._next_sweep:
            msg["gone"] = self._sweep()
            msg["live_runs"] = list(self._order)
        msg["type"] = "delta"
        return msg

    def _sweep(self) -> list[str]:
        """The once-a-second pass: forget the histories of streams gone from the feed, order the runs
        afresh; the addresses gone."""
        self._next_sweep = time.monotonic() + 1.0
        events = self.feed.events.copy()
        gone = [a for a in self._hist if a not in events]
        for a in gone:
            del self._hist[a]
        self._voice_at = {k: a for k, a in self._voice_at.items() if a in events}
        self._order = {}
        for ev in events.values():
            self._order.setdefault(ev.run, len(self._order))
        return gone

    async def _broadcast(self, text: str) -> None:
        """Send ``text`` to every page that has read what it was sent; the others skip it (a page that
        never reads holds at most :data:`SEND_BUFFER` bytes, and is closed after :data:`SLOW_CLOSE` s)."""
        now = time.monotonic()
        ready: list[tuple[web.WebSocketResponse, str]] = []
        for ws in list(self.clients):
            transport = self._transport.get(ws)
            if transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > SEND_BUFFER:
                since = self._behind.setdefault(ws, now)
                self.skipped += 1
                if now - since > SLOW_CLOSE:
                    self.closed_slow += 1
                    self.gate.refuse("slow_reader", "closed a page that read nothing for %.0f s (%s)", now - since,
                                     transport.get_extra_info("peername"))
                    self.clients.discard(ws)
                    transport.abort()
                continue
            if self._behind.pop(ws, None) is not None:
                ready.append((ws, json.dumps(self._hello())))  # it missed deltas: start it afresh
            else:
                ready.append((ws, text))
        results = await asyncio.gather(
            *(asyncio.wait_for(ws.send_str(t), SEND_TIMEOUT) for ws, t in ready), return_exceptions=True
        )
        for (ws, _), r in zip(ready, results, strict=True):
            if isinstance(r, BaseException):
                self.skipped += 1
                self._behind.setdefault(ws, now)
            else:
                self.sent += 1

    def health(self) -> dict[str, Any]:
        return {"url": self.bare_url, "token": self.access.token is not None, "clients": len(self.clients),
                "sent": self.sent, "skipped": self.skipped, "closed_slow": self.closed_slow, **self.gate.health()}
