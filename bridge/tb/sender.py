"""Steps of many runs → one bridge, through **one** socket (``follow`` may carry thousands of runs).

A :class:`~trainsound.osc.Client` per run would hold a socket per run: a logdir of ~1,020 runs ran out
of file descriptors. Here every run's bundles go through one sender (UDP, or TCP for ``--to
tcp://…``), with what a client adds on its own: ``event start`` before a run's first step, ``event nan``
once at its first non-finite value, ``event end`` when it ends.

>>> s = StepSender("127.0.0.1:9")           # port 9 ("discard"): nothing listens, nothing raises
>>> s.send_step("a", 3, [("loss", (0.5,))]); s.started
{'a'}
>>> s.close()
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from trainsound.transport import choose_bridge, make_sender

from ..wire.osc import I32, OscArg, bundle_head, encode_message
from ..wire.protocol import sanitize

__all__ = ["MAX_DATAGRAM", "StepSender"]

logger = logging.getLogger(__name__)

#: Largest datagram sent (as the client's): a step with more data goes out as several bundles.
MAX_DATAGRAM = 60_000

Message = tuple[str, tuple[float | int, ...]]
_Out = tuple[str, tuple[OscArg, ...]]


class StepSender:
    """One socket to the bridge (``to``: ``HOST:PORT``, ``tcp://HOST:PORT``; default ``$TRAINSOUND_ADDR``)."""

    def __init__(self, to: str | None = None) -> None:
        transport, self.host, self.port = choose_bridge(to, "--to")
        self._sender = make_sender(self.host, self.port, transport)
        self.started: set[str] = set()
        self._nan: set[str] = set()

    @property
    def dropped(self) -> int:
        """Datagrams the kernel refused (counted and warned about once by the sender, never raised)."""
        return self._sender.dropped

    def _bundle(self, run: str, messages: Sequence[_Out]) -> None:
        base = f"/nn/{sanitize(run)}/"
        head = bundle_head()
        chunk, size = [head], len(head)
        for path, args in messages:
            msg = encode_message(base + path, list(args))
            element = I32.pack(len(msg)) + msg
            if size + len(element) > MAX_DATAGRAM and len(chunk) > 1:
                self._sender.sendto(b"".join(chunk))
                chunk, size = [head], len(head)
            chunk.append(element)
            size += len(element)
        if len(chunk) > 1:
            self._sender.sendto(b"".join(chunk))

    def send_step(self, run: str, step: int, messages: Sequence[Message]) -> None:
        """One step of ``run``: ``messages`` are ``(path, args)`` after ``/nn/<run>/``; ``step`` goes first."""
        out: list[_Out] = []
        if run not in self.started:
            self.started.add(run)
            out.append(("event", ("start",)))
            logger.info("run %s → %s:%d", run, self.host, self.port)
        out.append(("step", (int(step) % (1 << 31),)))
        out.extend(m for m in messages if m[0] != "step")
        if run not in self._nan and not all(math.isfinite(a) for _, args in messages for a in args):
            self._nan.add(run)  # what a Client does: the bridge's NaN alarm hears of it at once
            out.append(("event", ("nan",)))
        self._bundle(run, out)

    def end(self, run: str) -> None:
        """``event end`` for a run that was started (its voices are released); the run is forgotten."""
        if run in self.started:
            self.started.discard(run)
            self._nan.discard(run)
            self._bundle(run, [("event", ("end",))])

    def close(self) -> None:
        """``event end`` for every started run, then close the socket."""
        for run in sorted(self.started):
            self.end(run)
        self._sender.close()
