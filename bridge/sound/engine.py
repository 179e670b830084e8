"""The one link between the bridge and an engine child process (the live sine engine, the pyo engine).

Why a process: an audio callback needs the GIL every block, and in the bridge process the
receive loop holds it most of the time under load (measured: 43 underruns in 11,227 sine
callbacks at 10,000 msg/s; JACK xruns with pyo, bench/bench_pyo.py). So the bridge only
ships coalesced updates down a pipe:

- :class:`EngineLink` (bridge side) spawns the child (``spawn``: no fork of a threaded
  bridge), waits for its ``("ready", …)`` handshake, runs a feeder thread that every
  ``interval`` takes what the output queued and sends it, hands what the child reports back
  to a callback, and on close sends ``("close",)``, waits for the child, kills it if it hangs;
- :func:`serve_child` (child side) answers the handshake and runs the receive loop, waiting
  without the GIL so the audio callback runs freely.

An engine that dies is reported once (``failed``) and the bridge goes on without it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from typing import Any

from ..errors import OutputUnavailable

log = logging.getLogger(__name__)

#: How often the feeder ships queued updates to the engine (s): well under a beat, a few audio blocks.
FEED_INTERVAL = 0.005
#: How long an engine may take to start (spawn, imports, opening the device).
STARTUP_TIMEOUT = 30.0
#: How long the child waits on its pipe per turn before running its idle work (s).
CHILD_POLL = 0.05

SPAWN = multiprocessing.get_context("spawn")


class EngineLink:
    """The bridge's end of an engine process (see the module docstring).

    Args:
        name: short name for the process, threads and log lines (``"sine"``, ``"pyo"``).
        target: the child's entry point, called as ``target(conn, *args)``; it must answer
            ``("ready", …)`` or ``("error", text)`` first (:func:`serve_child` does).
        args: picklable arguments for ``target``.
        take: called on the feeder thread every ``interval``; returns the message to send, or ``None``.
        on_message: called on the feeder thread with each message the child sends back.

    Raises:
        OutputUnavailable: the engine answered an error, exited, or did not start in time.
    """

    def __init__(self, name: str, target: Callable[..., None], args: tuple[Any, ...], *,
                 take: Callable[[], tuple[Any, ...] | None],
                 on_message: Callable[[tuple[Any, ...]], None] | None = None,
                 interval: float = FEED_INTERVAL, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.name = name
        self.failed: str | None = None
        self._take = take
        self._on_message = on_message
        self._interval = interval
        self._conn, child = SPAWN.Pipe()
        self._proc = SPAWN.Process(target=target, args=(child, *args), name=f"trainsound-{name}", daemon=True)
        self._proc.start()
        child.close()
        msg: tuple[Any, ...]
        if not self._conn.poll(startup_timeout):
            msg = ("error", f"{name} engine did not start within {startup_timeout:.0f} s")
        else:
            try:
                msg = self._conn.recv()
            except EOFError:
                self._proc.join(5.0)  # the pipe closes a moment before the exit code is there to read
                msg = ("error", f"{name} engine exited at start (exit code {self._proc.exitcode})")
        if msg[0] != "ready":
            self._kill()
            raise OutputUnavailable(msg[1])
        self.ready: tuple[Any, ...] = msg[1:]
        """What the engine said it is ready with (sample rate, device …)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed_loop, name=f"trainsound-{name}-feed", daemon=True)
        self._thread.start()

    def _feed_loop(self) -> None:
        while not self._stop.wait(self._interval):
            if not self.feed():
                return

    def feed(self) -> bool:
        """Send what :attr:`take` gives and read what came back; False once the engine is gone."""
        if self.failed is not None:
            return False
        msg = self._take()
        try:
            if msg is not None:
                self._conn.send(msg)
            while self._on_message is not None and self._conn.poll():
                self._on_message(self._conn.recv())
        except (EOFError, OSError):
            self.failed = f"{self.name} engine process exited (code {self._proc.exitcode})"
            log.error("%s output: %s; the bridge goes on without it", self.name, self.failed)
            return False
        return True

    def close(self, timeout: float) -> None:
        """Stop feeding (after a last feed), ask the engine to finish, wait ``timeout`` for its last word."""
        self._stop.set()
        self._thread.join(2.0)
        self.feed()
        with contextlib.suppress(OSError):  # the engine may be gone already
            self._conn.send(("close",))
        with contextlib.suppress(OSError, EOFError):
            if self._conn.poll(timeout):
                self._conn.recv()
        self._kill(timeout=5.0)

    def _kill(self, timeout: float = 1.0) -> None:
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5.0)
        self._conn.close()

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()


def child_signals() -> threading.Event:
    """Signal handling for an engine process: Ctrl-C reaches the whole process group but the bridge
    decides, so SIGINT is ignored; SIGTERM (a service manager's, or multiprocessing's at exit) sets the
    returned event, so the engine still finishes its files."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    term = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: term.set())
    return term


def serve_child(conn: Any, ready: tuple[Any, ...], handle: Callable[[tuple[Any, ...]], None],
                idle: Callable[[], None] | None = None, term: threading.Event | None = None) -> None:
    """The child's side: say ``ready``, then hand every message to ``handle`` until ``("close",)``, the
    bridge going away (the pipe closes) or ``term``; ``idle`` runs between messages."""
    conn.send(ready)
    try:
        while term is None or not term.is_set():
            if idle is not None:
                idle()
            if not conn.poll(CHILD_POLL):  # waits without the GIL: the audio callback runs freely
                continue
            msg = conn.recv()
            if msg[0] == "close":
                break
            handle(msg)
    except (EOFError, OSError):  # the bridge went away: finish all the same
        pass


def say_closed(conn: Any) -> None:
    """The child's last word after it finished its files (the bridge waits for it)."""
    with contextlib.suppress(OSError):
        conn.send(("closed",))
