"""Live MIDI out through python-rtmidi: a virtual port, or an existing port by name.

The API is a choice because ALSA does not exist on machines without a sound
card; ``auto`` uses ALSA where its sequencer exists and JACK otherwise. The port
is watched from a small thread: when the synth or JACK goes away the bridge
keeps running, and it reconnects when they come back (start order does not
matter). Shutdown ends every sounding note and sends all-notes-off on every
channel used.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..config import Config, output_options
from ..errors import OutputUnavailable
from ..mapped import Mapped
from ..mapping.deviation import DeviationCcs, Reference
from ..mapping.rules import Rule
from ..sound.jackserver import jack_server_id, jack_server_listening, quiet_jack
from ..sound.midiapis import RTMIDI_APIS, api_candidates
from ..wire import midi as mb
from ..wire.protocol import Event
from .base import HURRY, BaseOutput, NoteScheduler
from .channels import RunChannels
from .link import QUANTIZE, LinkClock, LinkOptions
from .listeners import JackListeners
from .mpe import MpeZone
from .nonfinite import grouped_rules

log = logging.getLogger(__name__)

PORT_NAME = "out"
RECONNECT_INTERVAL = 0.5
DRAIN_WAIT = 0.25
#: The drain wait when shutdown is hurried (a second SIGTERM): still a few JACK periods for the note-offs.
HURRY_DRAIN_WAIT = 0.05


class MidiOut(BaseOutput):
    """The ``midi`` output."""

    name = "midi"
    silences = True

    def __init__(
        self, config: Config, *, port: str | None = None, api: str | None = None, client_name: str | None = None
    ) -> None:
        try:
            import rtmidi
        except ImportError as err:
            raise OutputUnavailable("live MIDI needs python-rtmidi: pip install 'trainsound[bridge]'") from err
        self._rtmidi = rtmidi
        opts = config.midi
        self.api_choice = api or opts.api
        self.port_wanted = port if port is not None else opts.port
        self.client_name = client_name or opts.client_name
        compiled = set(rtmidi.get_compiled_api())
        self._apis = []
        for a in api_candidates(self.api_choice):
            const = getattr(rtmidi, RTMIDI_APIS[a])
            if const in compiled:
                self._apis.append((a, const))
        if not self._apis:
            raise OutputUnavailable(
                f"MIDI API {self.api_choice!r} is not available in this python-rtmidi build "
                f"(compiled: {', '.join(rtmidi.get_api_name(c) for c in sorted(compiled))})"
            )
        if any(a == "jack" for a, _ in self._apis):
            os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never spawn a jackd behind the user's back
            quiet_jack()
        self.sched = NoteScheduler()
        self.rules: tuple[Rule, ...] = config.mappings
        self.grouped = grouped_rules(config)
        self.alarm_channel = config.alarm.channel
        ref: Reference | None = output_options(config, "reference", None)
        self.deviations = DeviationCcs(ref, config.mappings) if ref is not None else None
        """``--reference``: each voice's deviation as a CC (docs/compare.md)."""
        self.mpe = MpeZone(opts.mpe_members, opts.bend_range) if opts.mode == "mpe" else None
        # Runs apart on the port (MPE has its own allocation: a member channel per sounding voice).
        self.plan = RunChannels(config.mappings, config.alarm.channel, config.groups) if self.mpe is None else None
        link: LinkOptions = output_options(config, "link", LinkOptions())
        self.link: LinkClock | None = LinkClock(link.tempo, link.quantum) if link.enabled else None
        self.grid = QUANTIZE[link.quantize] if self.link is not None else 0.0
        self._deferred: list[tuple[float, int, tuple[bytes, ...], tuple[bytes, ...], float, str]] = []
        self._deferred_seq = 0
        self.quantized = 0
        self._lock = threading.Lock()
        self._out: Any = None
        self.api_used = ""
        self.connected_to = ""
        self.sent = 0
        self.send_errors = 0
        self.dropped = 0
        """Messages not sent because no MIDI system was connected (never counted as sent)."""
        self.reconnects = 0
        self._down_logged = False
        self._server_id: tuple[int, int] | None = None
        self._probe_skip = 0
        self._stop = threading.Event()
        self._why = ""
        self._listeners: JackListeners | None = None
        self._greet = threading.Event()
        """Set when a listener connected (JACK's thread) or on a reload: the receive thread re-declares the zone."""
        self.greeted = 0
        self._listen_warned = False
        self._connect()
        if self._out is None:
            log.warning("MIDI: %s; will connect when it appears (logged once)", self._why)
            self._down_logged = True  # so that the first connect is logged too
        self._watch = threading.Thread(target=self._watch_loop, name="trainsound-midi-watch", daemon=True)
        self._watch.start()

    # -- connection -------------------------------------------------------------
    def _connect(self) -> None:
        reasons = []
        for api_name, const in self._apis:
            try:
                out = self._rtmidi.MidiOut(const, name=self.client_name)
            except Exception as err:  # rtmidi raises SystemError (an OSError) when the API has no server
                reasons.append("waiting for JACK server (none running)" if api_name == "jack" else f"{api_name}: {err}")
                continue
            try:
                if self.port_wanted:
                    ports = out.get_ports()
                    idx = next((i for i, p in enumerate(ports) if self.port_wanted in p), None)
                    if idx is None:
                        reasons.append(f"port {self.port_wanted!r} absent ({api_name}; have: {ports})")
                        out.delete()
                        continue
                    out.open_port(idx, PORT_NAME)
                    target = ports[idx]
                else:
                    out.open_virtual_port(PORT_NAME)
                    target = f"virtual port {self.client_name}:{PORT_NAME}"
            except Exception as err:
                reasons.append(f"{api_name}: {err}")
                with contextlib.suppress(Exception):
                    out.delete()
                continue
            with self._lock:
                self._out = out
            self.api_used, self.connected_to = api_name, target
            if self.mpe is not None:
                # A synth that restarted forgot the zone: declare it on every (re)connect.
                self._send(self.mpe.configure())
                if api_name == "jack" and not self.port_wanted:
                    self._watch_listeners(f"{self.client_name}:{PORT_NAME}")
            self._server_id = jack_server_id() if api_name == "jack" else None
            if self._down_logged or self.reconnects:
                log.warning("MIDI: connected to %s (%s)", target, api_name)
            else:
                log.info("MIDI: connected to %s (%s)%s", target, api_name, " in MPE mode" if self.mpe else "")
            self._down_logged = False
            return
        self._why = "; ".join(reasons)

    def _watch_listeners(self, port: str) -> None:
        """MPE on a virtual JACK port: a DAW that connects later gets the zone then (:mod:`.listeners`)."""
        try:
            self._listeners = JackListeners(port, f"{self.client_name}-listen", self._on_listener)
        except OutputUnavailable as err:
            if not self._listen_warned:
                log.warning("MIDI: %s; a listener connecting after start gets the MPE zone on SIGHUP", err)
                self._listen_warned = True

    def _on_listener(self, other: str) -> None:
        log.info("MIDI: %s is listening; declaring the MPE zone to it", other)
        self._greet.set()

    def _unwatch_listeners(self) -> None:
        listeners, self._listeners = self._listeners, None
        if listeners is not None:
            listeners.close()

    def _alive(self) -> bool:
        """Whether our port and its target still exist (called from the watch thread).

        rtmidi keeps a dead JACK client's port list, so a server restart is seen
        through the server's socket identity; the target port through our own
        client's live port list. Only where neither is possible (no JACK2 socket
        found) is a probe client opened, and then less often.
        """
        if self.api_used == "jack" and self._server_id is not None:
            if jack_server_id() != self._server_id or not jack_server_listening():
                self._why = "waiting for JACK server (it went away)"
                return False
        elif self.api_used == "jack":
            self._probe_skip = (self._probe_skip + 1) % 4
            if self._probe_skip:
                return True
            return self._probe()
        if not self.port_wanted:
            return True
        with self._lock:
            out = self._out
            if out is None:
                return False
            try:
                return self.connected_to in out.get_ports()
            except Exception:
                return False

    def _probe(self) -> bool:
        const = dict(self._apis)[self.api_used]
        try:
            if self.port_wanted:
                probe = self._rtmidi.MidiOut(const, name=f"{self.client_name}-watch")
                ok = any(p == self.connected_to for p in probe.get_ports())
            else:
                probe = self._rtmidi.MidiIn(const, name=f"{self.client_name}-watch")
                ok = any(p.startswith(f"{self.client_name}:") for p in probe.get_ports())
            probe.delete()
            return ok
        except Exception:
            return False

    def _watch_loop(self) -> None:
        while not self._stop.wait(RECONNECT_INTERVAL):
            if self._out is not None:
                if self._alive():
                    continue
                log.warning("MIDI: lost %s (%s); reconnecting", self.connected_to, self.api_used)
                self._unwatch_listeners()
                with self._lock:
                    old, self._out = self._out, None
                with contextlib.suppress(Exception):
                    old.delete()
                self.reconnects += 1
                self._down_logged = True
            self._connect()

    # -- Output protocol --------------------------------------------------------
    def _send(self, msgs: Sequence[bytes]) -> None:
        with self._lock:
            out = self._out
            if out is None:
                self.dropped += len(msgs)
                return
            for m in msgs:
                try:
                    out.send_message(m)
                    self.sent += 1
                except Exception:
                    self.send_errors += 1

    def reconfigure(self, config: Config) -> None:
        """A reloaded config's rules (MPE reads a rule's note range; the run blocks follow the new engine).
        In MPE mode the zone is declared again: a listener that connected since (ALSA, CoreMIDI) gets it."""
        self.rules = config.mappings
        if self.mpe is not None:
            self._greet.set()
        if self.plan is not None:
            self.plan.reconfigure(config.mappings, config.groups)
        self.grouped = grouped_rules(config)

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        for m in mapped:
            if self.mpe is not None and m.alarm and m.kind == "nan" and m.rule >= 0:
                self._send(self.mpe.release([(m.rule, m.stream)]))  # the value is unknown: its held note ends
            if not m.midi:
                continue
            if self.mpe is not None:
                self._handle_mpe(m)
                continue
            assert self.plan is not None
            m = self.plan.route(m)
            if self.grid and m.target == "note":
                self._start_on_grid(m.t, m.midi, m.later, m.length, m.run)
            else:
                self._send(self.sched.start(m.t, m.midi, m.later, m.length, m.run))
        if self.deviations is not None and mapped:  # --reference: each voice's deviation as a CC
            ccs = self.deviations.messages(event, mapped)
            if ccs:
                self._send([msg for _, msg in ccs])

    def _start_on_grid(
        self, t: float, msgs: tuple[bytes, ...], later: tuple[bytes, ...], length: float, run: str
    ) -> None:
        """Start a note now if the Link grid is here, else at the next grid point (CCs never wait)."""
        assert self.link is not None
        delay = self.link.delay(self.grid)
        if delay <= 0.0:
            self._send(self.sched.start(t, msgs, later, length, run))
            return
        self.quantized += 1
        heapq.heappush(self._deferred, (t + delay, self._deferred_seq, msgs, later, length, run))
        self._deferred_seq += 1

    def _silence(self, rule: int, run: str) -> None:
        # Notes end by their length; MPE holds a group's note until it is released.
        if self.mpe is not None and rule in self.grouped:
            self._send(self.mpe.release([k for k in self.mpe.note_keys() if k[0] == rule and k[1][:1] == (run,)]))

    def _handle_mpe(self, m: Mapped) -> None:
        assert self.mpe is not None
        msgs, held = self.mpe.route(m, self.rules, self.alarm_channel)
        if held and self.grid and any(mb.is_note_on(x) for x in msgs):
            self._start_on_grid(m.t, tuple(msgs), (), 0.0, m.run)
        elif held:
            self._send(msgs)
        else:
            self._send(self.sched.start(m.t, msgs, self.mpe.moved(m, msgs), m.length, m.run))

    def _tick(self, now: float) -> None:
        if self._greet.is_set() and self.mpe is not None:
            self._greet.clear()
            self.greeted += 1
            self._send(self.mpe.declare())
        deferred = self._deferred
        while deferred and deferred[0][0] <= now:
            when, _, msgs, later, length, run = heapq.heappop(deferred)
            self._send(self.sched.start(when, msgs, later, length, run))
        due = self.sched.due(now)
        if due:
            self._send([msg for _, msg, _ in due])
        if self.mpe is not None:
            gone = self.mpe.expire(now)
            if gone:
                self._send(gone)
        if self.link is not None:
            self.link.check_peers()

    def _release_run(self, run: str, now: float) -> None:
        # A note of the ended run still waiting for the Link grid never starts.
        self._deferred = [d for d in self._deferred if d[5] != run]
        heapq.heapify(self._deferred)
        if self.mpe is not None:
            self._send(self.mpe.release_run(run))
        self._send(self.sched.release(run))
        if self.plan is not None:
            self.plan.release(run)

    def _close(self) -> None:
        self._stop.set()
        self._unwatch_listeners()
        # Deferred note starts are dropped, not played: a note that never started needs no off.
        self._deferred.clear()
        if self.mpe is not None:
            self._send(self.mpe.release_all())
        self._send(self.sched.release_all())
        if self.link is not None:
            self.link.close()
        if self._out is not None:
            # rtmidi queues messages for the API's next cycle (a JACK period can be ~100 ms) and has
            # no drain call: closing at once would drop the final note-offs and leave notes stuck.
            # A second stop signal ends the wait early, but never skips the note-offs' few periods.
            HURRY.wait(DRAIN_WAIT - HURRY_DRAIN_WAIT)
            time.sleep(HURRY_DRAIN_WAIT)
        self._watch.join(timeout=2)
        with self._lock:
            out, self._out = self._out, None
        if out is not None:
            with contextlib.suppress(Exception):
                out.close_port()
            with contextlib.suppress(Exception):
                out.delete()

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = {
            "ok": self._out is not None,
            "api": self.api_used,
            "port": self.connected_to,
            "sent": self.sent,
            "send_errors": self.send_errors,
            "reconnects": self.reconnects,
            "sounding": self.sched.sounding + (self.mpe.sounding if self.mpe is not None else 0),
            **({"mode": "mpe", "mpe_retriggers": self.mpe.retriggers, "mpe_stolen": self.mpe.stolen,
                "mpe_declared": self.greeted} if self.mpe is not None else {}),
            **({"run_channels": self.plan.blocks(), "shared_runs": self.plan.shared_runs}
               if self.plan is not None else {}),
            **({"link": {**self.link.health(), "quantize": self.grid, "quantized": self.quantized}}
               if self.link is not None else {}),
            "dropped": self.dropped,
        }
        if self._out is None:
            h["why"] = self._why or "not connected"
        return h

    def describe(self) -> str:
        if self._out is None:
            return f"MIDI ({self.api_choice}): waiting for {self.port_wanted or 'a MIDI system'}"
        return f"MIDI {self.connected_to} ({self.api_used})"
