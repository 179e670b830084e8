"""The bridge daemon's lifecycle: start → serve → shutdown.

Start builds the outputs (an unavailable live output is logged in one line and
skipped; a file that cannot be written stops the start), binds the socket and
logs one line saying where it listens and what it outputs to. Serve runs the
receive loop on the main thread. Shutdown (SIGINT/SIGTERM) plays what is
scheduled, ends every note and finishes every file; a second signal hurries
(waits cut short, notes still silenced, files still finished), a third exits at
once (:mod:`.signals`). The handlers stay until every output is closed; then
the previous ones are restored (or, when the process ends next, late ones ignored).

Under systemd (``Type=notify``) the daemon says ``READY=1`` once the sockets are
bound and the outputs are up, pings the watchdog from the receive loop's
periodic hook, and says ``STOPPING=1`` on shutdown. ``SIGHUP`` re-reads the
config: a valid one maps from then on (outputs, sounding notes and recordings
carry on), an invalid one is refused in one log line and the old one stays.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Any

from .. import __version__
from ..config import Config
from ..errors import TrainsoundError
from ..outputs import OutputSpec, build_outputs
from ..outputs.base import hurry_outputs
from ..pipeline import Pipeline
from ..receive.loop import DEFERRED, TcpServer, UdpReceiver
from ..receive.sockets import Allowlist, ListenError, check_exposure, kernel_drops, open_tcp, open_udp
from ..receive.stats import Stats
from ..web.feed import Feed
from ..web.oscquery_options import start_oscquery
from ..wire.osc import OscArg, encode_message, pad
from ..wire.protocol import PROTOCOL_VERSION
from .answers import (
    LEARN_ADDRESSES,
    MAX_STATUS_REPLY,
    MAX_TCP_STATUS,
    TCP_HINT,
    answer_learn,
    fit_status,
    page_forward,
    snapshot_reply,
)
from .reload import ConfigSource, restart_needed
from .replies import SlowReplies
from .sdnotify import Notifier
from .signals import StopSignals, take_pending
from .voicestate import VoiceMemory, open_memory

log = logging.getLogger("trainsound.bridge")
#: A UDP status request smaller than this gets the hint without the status being built (the summary
#: needs ~250 bytes), so that a flood of small requests costs next to nothing.
_MIN_SUMMARY_REQUEST = 256
#: Incidents in a ``/trainsound/snapshot`` reply (``top`` shows the last few, each run's first among them).
INCIDENTS_SHOWN = 8
#: How often the receive thread hands the web page a fresh status, and forgets the feed's idle runs.
PUBLISH_INTERVAL = 0.5


class Daemon:
    """One bridge process."""

    def __init__(
        self,
        config: Config,
        specs: list[OutputSpec],
        source: ConfigSource | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.specs = specs
        self.source = source
        """Where SIGHUP re-reads the config from; ``None``: reloading is refused."""
        self.notifier = notifier or Notifier()
        self.stats = Stats()
        self.pipeline: Pipeline | None = None
        self.memory: VoiceMemory | None = None
        self.receiver: UdpReceiver | None = None
        self.tcp: TcpServer | None = None
        self.reloads = 0
        self.reload_errors = 0
        self._stop_reason = ""
        self._dump_stats = False
        self._reload = False
        self._next_stats = 0.0
        self._stops = StopSignals(self._stop, self._hurry)
        self.hurry = False
        """A second stop signal arrived: shutdown skips its waits."""
        self.feed = Feed()
        """Latest values for the web page and ``trainsound top`` (bridge/web/feed.py)."""
        self.web: Any = None
        """The page's server (bridge/web/server.py), when ``--web`` or ``[web].listen`` asks for it."""
        self._next_publish = 0.0
        self.oscquery: Any = None  # the OSCQuery server (bridge/web/oscquery.py): --oscquery, [oscquery].listen
        self.slow = SlowReplies(lambda data, to: self.receiver.reply(data, to) if self.receiver else None)
        """The snapshot is built off the receive loop (issue 28, item 1)."""

    # -- control messages -------------------------------------------------------
    def status(self) -> dict[str, Any]:
        assert self.pipeline is not None
        p = self.pipeline
        voices = p.engine.voices()
        return {
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "listen": list(self.config.bridge.listen),
            "tcp": self.tcp.health() if self.tcp is not None else None,
            "config": self.config.source,
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            **self.stats.snapshot(),
            "kernel_drops": kernel_drops(self.receiver.sock) if self.receiver is not None else None,
            "mapping": vars(p.engine.counters),
            "scheduled": p.scheduled,
            "scheduled_bytes": p.scheduled_bytes,
            "runs": sorted(p.runs),
            "voices": voices,
            "groups": p.engine.groups(),
            "outputs": p.health(),
            "alarms": p.engine.watch.status(),
            **({"learn": p.solo.status(time.time())} if p.solo is not None else {}),
            **({"web": self.web.health()} if self.web is not None else {}),
            **({"oscquery": self.oscquery.health()} if self.oscquery is not None else {}),
        }

    def snapshot_parts(self) -> dict[str, Any]:
        """What ``/trainsound/snapshot`` is built from (:func:`.answers.snapshot_reply`), read on the loop:
        the feed's copy, the incidents with their members (the feed's alarms are what sounded), counters."""
        assert self.pipeline is not None
        return dict(feed=self.feed.copy(), config=self.config,
                    incidents=self.pipeline.engine.watch.status()["recent"][-INCIDENTS_SHOWN:],
                    counters={**self.stats.snapshot(), "mapping": dict(vars(self.pipeline.engine.counters))},
                    outputs=self.pipeline.health(),
                    kernel_drops=kernel_drops(self.receiver.sock) if self.receiver is not None else None)

    def status_json(self, limit: int = MAX_STATUS_REPLY) -> str:
        """The status as JSON of at most ``limit`` bytes (UTF-8 of ASCII-escaped JSON: bytes = characters).

        Shrinks in steps: group values become counts; voice lists become counts and runs are cut to 100;
        then only the counters;
        then ``{"truncated": true, "tcp": true}``; ``""`` when not even that fits.
        """
        return fit_status(self.status(), limit)

    def answer(self, address: str, args: tuple[OscArg, ...], limit: int | None = None,
               sender: object = None) -> bytes | None:
        """The reply to a control message (the receive layer sends it back); ``None``: unknown.

        ``limit`` (UDP: the request's size) bounds the reply: the status shrinks to fit (see
        :meth:`status_json`, or just ``/trainsound/tcp``: "ask over TCP"), the pong drops its version.
        """
        if address == "/trainsound/status":
            if limit is None:  # TCP: no reflection possible; bounded by what the CLI's SLIP decoder takes
                return encode_message("/trainsound/status.reply", [self.status_json(MAX_TCP_STATUS)])
            if limit < _MIN_SUMMARY_REQUEST:  # not even the summary fits: do not build the status at all
                return encode_message(TCP_HINT, [])
            # The reply's head (address, type tags) takes 32 bytes, the string's NUL and padding up to 4.
            text = self.status_json(min(limit, MAX_STATUS_REPLY) - 36)
            reply = encode_message("/trainsound/status.reply", [text]) if text else b""
            return reply if reply and len(reply) <= limit else encode_message(TCP_HINT, [])
        if address == "/trainsound/snapshot":  # bounded like the status; built off the loop, sent when built
            if limit is not None and limit < _MIN_SUMMARY_REQUEST:
                return encode_message(TCP_HINT, [])
            # UDP limits in steps of 4 KiB: at most 16 kinds of reply however the requests are padded.
            size = None if limit is None else max(_MIN_SUMMARY_REQUEST, limit - limit % 4096)
            self.slow.ask(size, self.snapshot_parts, lambda parts: snapshot_reply(parts, size), sender)
            return DEFERRED
        if address == "/trainsound/ping":
            pong = encode_message("/trainsound/pong", [PROTOCOL_VERSION])  # 28 bytes
            if limit is not None and len(pong) > limit:
                # python-osc's ping (24 bytes) gets a pong without the version; a ping without type tags
                # (20 bytes, the smallest) one without type tags either (OSC 1.0 allows it).
                pong = encode_message("/trainsound/pong", []) if limit >= 24 else pad(b"/trainsound/pong")
            return pong
        if address in LEARN_ADDRESSES:
            assert self.pipeline is not None
            reply = answer_learn(self.pipeline, address, args, limit is not None, sender)
            # Over UDP a reply never outgrows its request (no reflection amplifier): ask over TCP instead.
            return reply if limit is None or len(reply) <= limit else encode_message(TCP_HINT, [])
        return None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        host, port = cfg.bridge.listen
        check_exposure(host, cfg.bridge.allow_explicit)
        sock = open_udp(host, port, cfg.bridge.rcvbuf)
        allow = Allowlist(cfg.bridge.allow)
        try:
            if cfg.bridge.tcp:
                try:
                    tcp_sock = open_tcp(host, sock.getsockname()[1])
                except ListenError as err:
                    # UDP is the main transport: a busy TCP port must not keep the service down.
                    log.error("%s; serving UDP only", err)
                else:
                    self.tcp = TcpServer(tcp_sock, self.stats, allow, cfg.bridge.tcp_max_connections,
                                         cfg.bridge.tcp_max_frame, cfg.bridge.tcp_idle)
            outputs = build_outputs(cfg, self.specs)
        except TrainsoundError:
            sock.close()
            if self.tcp is not None:
                self.tcp.close()
            raise
        # The feed takes every event like an output (last: after the outputs that sound).
        self.feed.reconfigure(cfg)
        self.memory = open_memory(cfg)
        self.pipeline = Pipeline(cfg, [*outputs, self.feed], self.stats, memory=self.memory)
        self.feed.control = lambda args, now: page_forward(self.pipeline, args, now)  # the page's requests
        self.receiver = UdpReceiver(sock, self.pipeline, allow, self.tcp, control=self.answer)
        where = sock.getsockname()
        outs = "; ".join(o.describe() for o in outputs) or "nothing (no outputs)"
        log.info(
            "trainsound bridge %s listening on udp://%s:%d%s; outputs: %s; mapping: %s (%d rules)",
            __version__,
            where[0],
            where[1],
            " and tcp (SLIP)" if self.tcp is not None else "",
            outs,
            cfg.source,
            len(cfg.mappings),
        )
        if not outputs:
            log.warning(
                "no outputs: messages are received, counted and answered in status, but nothing plays or is "
                "written (add --midi-file, --wav, --osc-out, --record, or drop --no-midi)"
            )
        self._start_web()
        self.oscquery = start_oscquery(self.config, self.feed, (where[0], where[1]), on_error=self.shutdown)
        self.notifier.ready(f"listening on {where[0]}:{where[1]}; outputs: {outs}")

    def _start_web(self) -> None:
        from ..config import output_options
        from ..web.options import WebOptions

        opts: WebOptions = output_options(self.config, "web", WebOptions())
        if opts.listen is None:
            return
        try:
            from ..web.options import Access
            from ..web.server import WebServer
        except ImportError as err:
            log.error("web page unavailable: it needs aiohttp: pip install 'trainsound[web]' (%s)", err)
            return
        host, port = opts.listen
        try:
            server = WebServer(self.feed, lambda: self.config, host, port, Access.for_listen(host, opts.allow),
                               opts.history, opts.poll_hz)
            server.start()
        except TrainsoundError:
            self.shutdown()
            raise
        self.web = server
        self.web.status = self.status()
        log.info("web page: %s", server.url)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == getattr(signal, "SIGUSR1", None):
            self._dump_stats = True
            return
        if signum == getattr(signal, "SIGHUP", None):
            self._reload = True  # done in the receive loop, never inside the handler
            return
        self._stops(signum)

    def _stop(self, name: str) -> None:
        self._stop_reason = name
        if self.receiver is not None:
            self.receiver.stop()

    def _hurry(self) -> None:
        """A second SIGINT/SIGTERM: cut waits short; notes are still silenced and files still finished."""
        self.hurry = True
        hurry_outputs()
        log.warning("second stop signal: hurrying (notes are still silenced, files finished); a third exits now")

    def reload(self) -> bool:
        """Re-read the config; apply it if valid, else keep the old one. True if applied."""
        if self.source is None:
            log.error("reload refused: the bridge was not started from a reloadable config")
            return False
        self.notifier.reloading()
        try:
            new = self.source.load()
            check_exposure(new.bridge.listen[0], new.bridge.allow_explicit)
        except Exception as err:  # whatever the file holds, a reload never takes the daemon down
            self.reload_errors += 1
            why = str(err) if isinstance(err, TrainsoundError) else f"{type(err).__name__}: {err}"
            log.error("reload refused, keeping the running config (%s): %s", self.config.source, why)
            self.notifier.ready(f"reload refused: {why}")
            return False
        skipped = restart_needed(self.config, new)
        if skipped:
            log.warning("reload: changes to %s need a restart; kept as they were", ", ".join(skipped))
        assert self.pipeline is not None and self.receiver is not None
        try:
            self.pipeline.reload(new)
        except Exception as err:  # a valid config the engine still cannot take: keep the old one
            self.pipeline.reload(self.config)
            self.reload_errors += 1
            log.error("reload refused, keeping the running config (%s): %s: %s", self.config.source,
                      type(err).__name__, err)
            return False
        self.receiver.allow = Allowlist(new.bridge.allow)
        if self.tcp is not None:
            self.tcp.allow = self.receiver.allow
            self.tcp.idle = new.bridge.tcp_idle
        self.config = new  # the pipeline's reload reconfigured every output, the feed too
        self.reloads += 1
        log.info("reloaded config %s (%d rules)", new.source, len(new.mappings))
        self.notifier.ready(f"reloaded {new.source}")
        return True

    def _periodic(self, now: float) -> None:
        self.notifier.watchdog(now)
        self.slow.flush()
        if self.memory is not None and self.memory.dirty:
            self.memory.save()
        if now >= self._next_publish:
            self._next_publish = now + PUBLISH_INTERVAL
            assert self.pipeline is not None
            self.feed.prune(set(self.pipeline.runs))
            if self.web is not None:  # always: a page that connects gets a status at most 0.5 s old
                self.web.status = self.status()  # built here: outputs' health is read on their own thread
        if self._reload:
            self._reload = False
            self.reload()
        interval = self.config.bridge.stats_interval
        if self._dump_stats or (interval and now >= self._next_stats):
            if self._next_stats or self._dump_stats:
                self.log_counters()
            self._dump_stats = False
            self._next_stats = now + interval if interval else 0.0

    def log_counters(self) -> None:
        s = self.stats.snapshot()
        assert self.pipeline is not None
        c = self.pipeline.engine.counters
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(s["dropped"].items())) or "none"
        log.info(
            "counters: received=%d accepted=%d mapped=%d alarms=%d nonfinite=%d thinned=%d dropped: %s",
            s["received"],
            s["accepted"],
            c.mapped,
            c.alarms,
            c.nonfinite,
            c.thinned,
            dropped,
        )

    def serve(self) -> None:
        """Run the receive loop until a stop signal, then play what is due."""
        assert self.receiver is not None
        self.receiver.serve(self._periodic)
        self.receiver.drain()

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.slow.close()
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self.oscquery is not None:
            self.oscquery.stop()
        if self.pipeline is not None:
            self.pipeline.close(time.time())
            self.log_counters()
        if self.memory is not None:
            self.memory.save(force=True)
        if self.receiver is not None:
            self.receiver.sock.close()
        if self.tcp is not None:
            self.tcp.close()
        log.info("trainsound bridge stopped (%s)", self._stop_reason or "done")
        self.notifier.close()

    def run(self, exiting: bool = False) -> int:
        """Start, serve, shut down. ``exiting``: a late SIGINT/SIGTERM is ignored, not a kill of a clean exit."""
        signals = [signal.SIGINT, signal.SIGTERM] + [
            getattr(signal, n) for n in ("SIGUSR1", "SIGHUP") if hasattr(signal, n)
        ]
        self.start()
        previous = {s: signal.signal(s, self._on_signal) for s in signals}
        try:
            for signum in take_pending():  # arrived while starting (the early handler kept them)
                self._on_signal(signum, None)
            self.serve()
        finally:
            try:
                self.shutdown()
            finally:
                for s, h in previous.items():
                    signal.signal(s, signal.SIG_IGN if exiting and s in signals[:2] else h)
        return 0
