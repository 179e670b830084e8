"""Control replies too slow to build on the receive loop, built on one worker thread (issue 28, item 1).

``/trainsound/snapshot`` with 64 runs loaded is ~165 KB of JSON and took ~40 ms to build: a burst of
them held the receive loop for seconds. Here the loop only takes what must be read on its own thread
(cheap copies: the feed, counters, health) and hands them over; the worker builds the reply, and the
loop sends it from its periodic hook (:meth:`SlowReplies.flush`), so only the loop ever writes to a
peer. A request arriving while a reply for the same limit is being built waits for that one, and a
reply younger than :data:`MAX_AGE` is sent again as it is: however many ask, one build at a time and
at most a few a second. A peer that asks again within :data:`REASK` of its reply gets it once more
:data:`REASK` after the first, however many it asked for (the rest are counted in ``coalesced``): 20
pipelined copies of a 165 KB reply would only overflow its buffer, and a client that asks again at once
(``top`` after a key press) must still be answered, never left to its timeout.
The worker holds the GIL for the interpreter's switch interval (5 ms) at most at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: A built reply is sent again unchanged to whoever asks within this many seconds (``top`` asks every second).
MAX_AGE = 0.25
#: Requests waiting for one build; more are not answered (counted in ``shed``; the reply budget comes first).
MAX_WAITING = 256
#: A peer sent a cached reply gets it again at once only when it asks this much later; sooner, it gets it
#: this much after the first (pipelined repeats are answered once more, not once each).
REASK = 0.05
#: Limits (UDP request sizes, in 4 KiB steps) remembered with their replies.
MAX_KEYS = 17

Build = Callable[[Any], bytes]
Send = Callable[[bytes, object], None]


class SlowReplies:
    """One worker thread building replies; the receive loop asks (:meth:`ask`) and sends (:meth:`flush`)."""

    def __init__(self, send: Send, clock: Callable[[], float] = time.monotonic) -> None:
        self.send = send
        self.clock = clock
        self.built = 0
        self.shed = 0
        """Requests refused because :data:`MAX_WAITING` already waited."""
        self.coalesced = 0
        """Requests from a peer already given (or waiting for) the same reply."""
        self._cache: dict[object, tuple[float, bytes, dict[object, float]]] = {}
        """key → (built at, reply, {peer: when it was sent to it})."""
        self._waiting: dict[object, list[object]] = {}
        self._jobs: queue.SimpleQueue[tuple[object, Build, Any] | None] = queue.SimpleQueue()
        self._done: deque[tuple[object, bytes]] = deque()
        self._later: dict[tuple[object, object], float] = {}
        """(key, peer) → when to send it the cached reply again (it asked within :data:`REASK`)."""
        self._thread: threading.Thread | None = None

    def ask(self, key: object, parts: Callable[[], Any], build: Build, to: object) -> None:
        """Reply to ``to`` with ``build(parts())`` for ``key``: now if a fresh one is cached, else when built.

        ``parts`` runs here (on the loop: it must be cheap); ``build`` on the worker (pure, thread-safe).
        """
        hit = self._cache.get(key)
        now = self.clock()
        if hit is not None and now - hit[0] < MAX_AGE:
            sent = hit[2].get(to)
            if sent is not None and now - sent < REASK:
                if (key, to) in self._later:
                    self.coalesced += 1
                elif len(self._later) >= MAX_WAITING:
                    self.shed += 1
                else:
                    self._later[key, to] = sent + REASK
            elif sent is None and len(hit[2]) >= MAX_WAITING:
                self.shed += 1
            else:
                hit[2][to] = now
                self.send(hit[1], to)
            return
        waiting = self._waiting.get(key)
        if waiting is not None:
            if to in waiting:
                self.coalesced += 1
            elif len(waiting) >= MAX_WAITING:
                self.shed += 1
            else:
                waiting.append(to)
            return
        self._waiting[key] = [to]
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="trainsound-replies", daemon=True)
            self._thread.start()
        self._jobs.put((key, build, parts()))

    def flush(self) -> int:
        """Send what the worker finished to whoever waited for it, and the replies asked again within
        :data:`REASK` once due (on the receive loop); how many were sent."""
        n = self._send_later() if self._later else 0
        while self._done:
            key, reply = self._done.popleft()
            if not reply:  # the builder failed (logged): nothing to send, the next ask builds afresh
                self._waiting.pop(key, None)
                continue
            if len(self._cache) >= MAX_KEYS and key not in self._cache:
                self._cache.clear()
            waited = self._waiting.pop(key, [])
            now = self.clock()
            self._cache[key] = (now, reply, dict.fromkeys(waited, now))
            for to in waited:
                self.send(reply, to)
                n += 1
        return n

    def _send_later(self) -> int:
        now, n = self.clock(), 0
        for (key, to), due in list(self._later.items()):
            if due > now:
                continue
            del self._later[key, to]
            hit = self._cache.get(key)
            if hit is None:  # the cache started afresh (MAX_KEYS): counted, the peer asks again
                self.shed += 1
                continue
            hit[2][to] = now
            self.send(hit[1], to)
            n += 1
        return n

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            key, build, parts = job
            try:
                reply = build(parts)
            except Exception:  # a bug in a builder must not end the worker (the loop would wait for ever)
                log.exception("building a reply failed")
                reply = b""
            self.built += 1
            self._done.append((key, reply))

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(2.0)
            self._thread = None
