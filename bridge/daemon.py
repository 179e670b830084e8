"""The bridge daemon's lifecycle: start → serve → shutdown.

Start builds the outputs (an unavailable live output is logged in one line and
skipped; a file that cannot be written stops the start), binds the socket and
logs one line saying where it listens and what it outputs to. Serve runs the
receive loop on the main thread. Shutdown (SIGINT/SIGTERM) plays what is
scheduled, ends every note and finishes every file; the previous signal
handlers are restored.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from . import __version__
from .config import Config
from .errors import OutputUnavailable, TrainsoundError
from .osc_codec import OscArg, encode_message
from .osc_in import Allowlist, UdpReceiver, open_udp
from .outputs import Output, load
from .pipeline import Pipeline
from .protocol import PROTOCOL_VERSION
from .stats import Stats

log = logging.getLogger("trainsound.bridge")


@dataclass(frozen=True)
class OutputSpec:
    """An output to build: registry name and keyword options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    required: bool = False
    """Failing to open it stops the start (files the user asked to keep); otherwise logged and skipped."""


def build_outputs(config: Config, specs: list[OutputSpec]) -> list[Output]:
    """Instantiate outputs; live ones that are unavailable are skipped with one log line."""
    outputs: list[Output] = []
    for spec in specs:
        try:
            factory = load(spec.name)
            outputs.append(factory(config, **spec.options))
        except OutputUnavailable as err:
            if spec.required:
                for o in outputs:
                    o.close()
                raise
            log.error("output %s unavailable: %s (going on without it)", spec.name, err)
    return outputs


def describe(out: Output) -> str:
    d = getattr(out, "describe", None)
    return d() if callable(d) else out.name


class Daemon:
    """One bridge process."""

    def __init__(self, config: Config, specs: list[OutputSpec]) -> None:
        self.config = config
        self.specs = specs
        self.stats = Stats()
        self.pipeline: Pipeline | None = None
        self.receiver: UdpReceiver | None = None
        self._stop_reason = ""
        self._dump_stats = False
        self._next_stats = 0.0

    # -- control messages -------------------------------------------------------
    def status(self) -> dict[str, Any]:
        assert self.pipeline is not None
        p = self.pipeline
        voices = p.engine.voices()
        return {
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "listen": list(self.config.bridge.listen),
            **self.stats.snapshot(),
            "mapping": vars(p.engine.counters),
            "scheduled": p.scheduled,
            "runs": sorted({s.split("/")[0] for table in voices.values() for s in table}),
            "voices": voices,
            "outputs": p.health(),
        }

    def _control(self, address: str, args: tuple[OscArg, ...], sender: object) -> None:
        assert self.receiver is not None
        if address == "/trainsound/status":
            self.receiver.reply(encode_message("/trainsound/status.reply", [json.dumps(self.status())]), sender)
        elif address == "/trainsound/ping":
            self.receiver.reply(encode_message("/trainsound/pong", [PROTOCOL_VERSION]), sender)
        else:
            self.stats.drop("unknown_control", sender, f"{address}: unknown control message")

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        host, port = cfg.bridge.listen
        sock = open_udp(host, port, cfg.bridge.rcvbuf)
        try:
            outputs = build_outputs(cfg, self.specs)
        except TrainsoundError:
            sock.close()
            raise
        self.pipeline = Pipeline(cfg, outputs, self.stats, control=self._control)
        self.receiver = UdpReceiver(sock, self.pipeline, Allowlist(cfg.bridge.allow))
        where = sock.getsockname()
        outs = "; ".join(describe(o) for o in outputs) or "nothing (no outputs)"
        log.info(
            "trainsound bridge %s listening on udp://%s:%d; outputs: %s; mapping: %s (%d rules)",
            __version__,
            where[0],
            where[1],
            outs,
            cfg.source,
            len(cfg.mappings),
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == getattr(signal, "SIGUSR1", None):
            self._dump_stats = True
            return
        self._stop_reason = signal.Signals(signum).name
        if self.receiver is not None:
            self.receiver.stop()

    def _periodic(self, now: float) -> None:
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
        assert self.receiver is not None
        signals = [signal.SIGINT, signal.SIGTERM] + [getattr(signal, n) for n in ("SIGUSR1",) if hasattr(signal, n)]
        previous = {s: signal.signal(s, self._on_signal) for s in signals}
        try:
            self.receiver.serve(self._periodic)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def shutdown(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close(time.time())
            self.log_counters()
        if self.receiver is not None:
            self.receiver.sock.close()
        log.info("trainsound bridge stopped (%s)", self._stop_reason or "done")

    def run(self) -> int:
        self.start()
        try:
            self.serve()
        finally:
            self.shutdown()
        return 0
