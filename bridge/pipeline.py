"""Events through the mapping engine to the outputs — live and offline alike.

The daemon feeds datagrams as they arrive; ``replay``/``render`` feed recorded
messages with their recorded times. Either way :meth:`Pipeline.tick` runs on
the same clock as the events, so files written offline match a live run.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .config import Config
from .errors import OSCDecodeError
from .mapped import Mapped
from .mapping.engine import Engine, VoiceStore
from .mapping.solo import Solo, Target
from .outputs.base import COARSE_TICK, Output
from .receive.stats import Stats, fmt_sender
from .wire.osc import Message, decode_message, decode_packet
from .wire.protocol import CONTROL_PREFIX, Event, ProtocolError, parse_event
from .wire.routes import Route, Routes

#: ``tuple.__new__``: a NamedTuple built from a tuple, without its generated ``__new__``'s Python frame.
_new: Callable[..., Any] = tuple.__new__

log = logging.getLogger(__name__)
#: Every decoded incoming message at DEBUG (the clients log what they send on ``trainsound.osc.out``).
wire_log = logging.getLogger("trainsound.osc.in")
#: How often the tick looks for runs idle past ``[bridge].run_idle`` (their voices are released).
IDLE_CHECK_INTERVAL = 1.0
#: Memory the schedule queue may hold (``[bridge].schedule_queue`` caps messages; this caps bytes:
#: 64 KiB datagrams once held 1.18 GB). Beyond it a bundle is played now and counted ``schedule_full``.
SCHEDULE_MAX_BYTES = 64 << 20
#: What one queued message costs beyond its bytes: the heap entry, the decoded tuple (measured ~2× raw).
SCHEDULE_ENTRY_COST = 256


def schedule_cost(raw: bytes) -> int:
    """Bytes one scheduled message holds: the raw datagram and its decoded copy, plus the entry."""
    return 2 * len(raw) + SCHEDULE_ENTRY_COST


class Pipeline:
    """Decode → validate → map → outputs, with counters."""

    def __init__(
        self,
        config: Config,
        outputs: Iterable[Output],
        stats: Stats | None = None,
        memory: VoiceStore | None = None,
    ) -> None:
        self.config = config
        self.memory = memory
        self.engine = Engine(config, max_voices=config.bridge.max_voices, memory=memory)
        self.runs: dict[str, float] = {}
        """Run name → time last seen; at most ``[bridge].max_runs`` entries."""
        self.outputs: list[Output] = list(outputs)
        self.tick_interval = min((o.tick_interval for o in self.outputs), default=COARSE_TICK)
        """The longest the receive loop may wait between two :meth:`tick` calls: the finest any output needs
        (scheduled bundles and held values are then as late as that at most; without a sounding output
        nothing hears them)."""
        self.stats = stats or Stats()
        self._scheduled: list[tuple[float, int, bytes, Message, object]] = []
        self._seq = 0
        self.scheduled_bytes = 0
        self._failed: dict[str, int] = {}
        self._wire_debug = wire_log.isEnabledFor(logging.DEBUG)
        self._next_idle_check = -math.inf
        self.solo: Solo | None = None
        """The MIDI-learn solo, while one runs (see :mod:`.solo`)."""
        self.routes = Routes()
        """Addresses already accepted once: their messages skip decoding and validation (:mod:`.wire.routes`)."""
        self.fast = True
        """Take the routes (``False``: every message the full path; the tests compare the two)."""

    # -- input ---------------------------------------------------------------
    def feed_datagram(self, data: bytes, now: float, sender: object = None) -> None:
        """One UDP datagram (message or bundle) arriving at ``now``."""
        self.stats.datagrams += 1
        if self.fast and not self._wire_debug:
            known = self.routes.split(data)
            if known is not None:
                self._accept_known(now, known, sender)
                return
        try:
            items = decode_packet(data)
        except OSCDecodeError as err:
            self.stats.drop(err.reason, sender, f"{err} ({len(data)} bytes)")
            return
        if self._wire_debug:
            for when, _raw, (address, args) in items:
                wire_log.debug("%s %s %r%s", fmt_sender(sender), address, args, "" if when is None else f" at {when}")
        horizon = self.config.bridge.schedule_horizon
        for when, raw, msg in items:
            if when is None or when <= now:
                self._accept(now, raw, msg, sender)
            elif when - now > horizon:
                # Beyond the horizon: play now, counted, never held until memory runs out.
                self.stats.note(
                    "beyond_horizon", sender, f"bundle {when - now:.1f} s ahead, beyond the horizon: played now"
                )
                self._accept(now, raw, msg, sender)
            elif (
                len(self._scheduled) >= self.config.bridge.schedule_queue
                or self.scheduled_bytes + schedule_cost(raw) > SCHEDULE_MAX_BYTES
            ):
                self.stats.note("schedule_full", sender, "schedule queue full (messages or bytes): bundle played now")
                self._accept(now, raw, msg, sender)
            else:
                heapq.heappush(self._scheduled, (when, self._seq, raw, msg, sender))
                self.scheduled_bytes += schedule_cost(raw)
                self._seq += 1

    def feed_message(self, t: float, raw: bytes, sender: object = "replay") -> None:
        """One OSC message (as bytes) at time ``t`` — what session recordings hold."""
        self.stats.datagrams += 1
        known = self.routes.split(raw) if self.fast and raw[:1] == b"/" else None
        if known is not None:
            self._accept_known(t, known, sender)
            return
        try:
            msg = decode_message(raw)
        except OSCDecodeError as err:
            self.stats.drop(err.reason, sender, str(err))
            return
        self._accept(t, raw, msg, sender)

    def _accept(self, t: float, raw: bytes, msg: Message, sender: object) -> None:
        self.stats.received += 1
        address, args = msg
        if address.startswith(CONTROL_PREFIX):
            # The receive layer answers control messages that come alone in a datagram (receive/loop); one
            # inside a bundle, or in a recording, is not for the mapping.
            self.stats.drop("control_in_bundle", sender, f"{address}: control messages must come alone")
            return
        try:
            ev = parse_event(address, args, t, raw)
        except ProtocolError as err:
            self.stats.drop(err.reason, sender, str(err))
            return
        runs = self.runs
        if ev.run not in runs and len(runs) >= self.config.bridge.max_runs:
            self._make_room(t, sender)
        runs[ev.run] = t
        self.stats.accepted += 1
        self.dispatch(ev, self.engine.map(ev))
        if ev.kind == "event":
            if ev.name == "end":
                self.end_runs([ev.run], t)
        elif ev.blob is None:
            self.routes.learn(raw, address, ev.run, ev.kind, ev.name)

    def _accept_known(self, t: float, known: list[tuple[Route, tuple[Any, ...], bytes]], sender: object) -> None:
        """A datagram's messages at known addresses (:mod:`.wire.routes`): what :meth:`_accept` does for each,
        less the decoding and checks whose answer the route holds; every output then takes the datagram's
        events in one call (one time ``t``, the same order)."""
        runs, engine, solo = self.runs, self.engine, self.solo
        engine_map, map_grad = engine.map, engine._map_grad
        self.stats.received += len(known)
        self.stats.accepted += len(known)
        batch: list[tuple[Event, Sequence[Mapped]]] = []
        add = batch.append
        last = None
        for route, args, raw in known:
            run = route.run
            if run is not last:  # a datagram usually holds one run's values
                if run not in runs and len(runs) >= self.config.bridge.max_runs:
                    self._make_room(t, sender)
                runs[run] = t
                last = run
            kind = route.kind
            # Event(...) without its generated __new__'s Python frame: this runs for every value.
            ev: Event = _new(Event, (t, run, kind, route.name, args if route.floats else route.values(args), None,
                              route.address, raw))
            if kind == "grad_norm" and route.floats and (x := args[0]) - x == 0.0:
                mapped = map_grad(ev, x)  # Engine.map's first branch, taken here: most values are these
            else:
                mapped = engine_map(ev)
            if solo is not None and mapped:
                mapped = solo.filter(mapped)
            add((ev, mapped))
        for out in self.outputs:
            try:
                out.handle_batch(batch)
            except Exception as err:  # an output's bug must not stop the others
                self._output_failed(out, "handle", err)

    def end_runs(self, runs: list[str], now: float) -> None:
        """Runs that ended (``end`` event) or went idle: every output releases their voices, the engine
        frees them for other runs."""
        for run in runs:
            self.runs.pop(run, None)
            for out in self.outputs:
                try:
                    out.release_run(run, now)
                except Exception as err:
                    self._output_failed(out, "release_run", err)
        self.engine.forget_runs(set(runs))

    def _make_room(self, now: float, sender: object) -> None:
        """Make room for a new run: forget every run idle for ``[bridge].run_idle`` s, else the idlest
        eighth of the runs (at least one).

        A new run is never refused, so junk run names cannot lock a real run out; the runs still
        active keep their voices, the forgotten runs' voices are freed for new runs. Forgetting costs
        a pass over the voice tables: done for an eighth at a time, a flood of new names costs ~30 µs
        a message, not ~240 µs.
        """
        idle = self.config.bridge.run_idle
        stale = [r for r, last in self.runs.items() if now - last >= idle]
        if stale:
            self.stats.note("runs_forgotten", "pipeline", f"forgot {len(stale)} idle run(s) to make room")
        else:
            stale = heapq.nsmallest(max(1, len(self.runs) // 8), self.runs, key=self.runs.__getitem__)
            self.stats.note("run_evicted", sender, f"{len(self.runs)} runs ([bridge].max_runs): "
                            f"forgot the {len(stale)} idlest, {stale[0]!r} first")
        for r in stale:
            del self.runs[r]
        self.engine.forget_runs(set(stale))

    def reload(self, config: Config) -> None:
        """Map with a new config from now on; outputs (sounding notes, open files) and the schedule are kept.

        Voices are allocated afresh by the new engine, in first-seen order.
        """
        self.config = config
        self._new_engine(config)
        for out in self.outputs:
            out.reconfigure(config)

    def _new_engine(self, config: Config) -> None:
        old = self.engine
        self.engine = Engine(config, max_voices=config.bridge.max_voices, memory=self.memory)
        self.engine.carry(old)

    def learn(self, target: Target, now: float, seconds: float) -> None:
        """Solo one target for ``seconds`` (MIDI learn); a new learn replaces a running one."""
        self.solo = Solo(target, now, seconds)
        log.info("learn: soloing %s for %g s", target.name, seconds)
        if target.kind == "notes" and target.stream is not None and len(target.stream) == 2:
            for out in self.outputs:  # a voice group's notes: the sine output brings that group forward too
                out.bring_forward(target.stream[0], target.stream[1], now + seconds)

    def dispatch(self, ev: Event | None, mapped: list[Mapped]) -> None:
        if self.solo is not None and mapped:
            mapped = self.solo.filter(mapped)
        self._deliver(ev, mapped)

    def _deliver(self, ev: Event | None, mapped: list[Mapped]) -> None:
        for out in self.outputs:
            try:
                out.handle(ev, mapped)
            except Exception as err:  # an output's bug must not stop the others
                self._output_failed(out, "handle", err)

    def _output_failed(self, out: Output, where: str, err: BaseException) -> None:
        self.stats.output_errors[out.name] += 1
        n = self._failed.get(out.name, 0) + 1
        self._failed[out.name] = n
        if n == 1 or math.log2(n).is_integer():
            log.error("output %s failed in %s (%d times): %s: %s", out.name, where, n, type(err).__name__, err)

    # -- time ----------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Play due scheduled bundles, release rate-limited values, let outputs do housekeeping."""
        # Asked here, every tick, not per datagram: the level rarely changes and the check costs on the hot path.
        self._wire_debug = wire_log.isEnabledFor(logging.DEBUG)
        sched = self._scheduled
        while sched and sched[0][0] <= now:
            when, _, raw, msg, sender = heapq.heappop(sched)
            self.scheduled_bytes -= schedule_cost(raw)
            self._accept(when, raw, msg, sender)
        if now >= self._next_idle_check:
            self._next_idle_check = now + IDLE_CHECK_INTERVAL
            idle = self.config.bridge.run_idle
            stale = [r for r, last in self.runs.items() if idle > 0 and now - last >= idle]
            if stale:
                self.end_runs(stale, now)
        due = self.engine.flush_due(now)
        if due:
            self.dispatch(None, due)
        if self.solo is not None:
            if now >= self.solo.until:
                log.info("learn: %s done; every output plays again", self.solo.target.name)
                self.solo = None
            else:
                sweep = self.solo.sweep(now)
                if sweep:
                    self._deliver(None, sweep)
        for out in self.outputs:
            try:
                out.tick(now)
            except Exception as err:
                self._output_failed(out, "tick", err)

    def close(self, now: float | None = None) -> None:
        """Play what is scheduled, then close every output (silence, finish files)."""
        if now is not None:
            self.tick(now)
        while self._scheduled:
            when, _, raw, msg, sender = heapq.heappop(self._scheduled)
            self.scheduled_bytes -= schedule_cost(raw)
            self._accept(when, raw, msg, sender)
        for out in self.outputs:
            try:
                out.close()
            except Exception as err:
                self._output_failed(out, "close", err)

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for o in self.outputs:
            try:
                out[o.name] = o.health()
            except Exception as err:
                out[o.name] = {"ok": False, "error": str(err)}
        return out

    @property
    def scheduled(self) -> int:
        return len(self._scheduled)
