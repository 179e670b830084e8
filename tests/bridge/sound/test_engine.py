"""The one engine link (sine and pyo): spawn, ready handshake, feeding, a dead child, close."""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import pytest
from support import wait_until

from trainsound.bridge.errors import OutputUnavailable
from trainsound.bridge.sound.engine import EngineLink, child_signals, say_closed, serve_child


def echo_child(conn: Any, greeting: str) -> None:
    """A minimal engine: answers ready, echoes what it is fed, says closed at the end."""
    child_signals()
    serve_child(conn, ("ready", greeting, os.getpid()), lambda msg: conn.send(("echo", *msg[1:])))
    say_closed(conn)


def refusing_child(conn: Any) -> None:
    conn.send(("error", "no sound card here"))


def exiting_child(conn: Any) -> None:
    os._exit(3)


def test_handshake_feed_and_replies_then_close() -> None:
    queue: deque[int] = deque()
    got: list[tuple[Any, ...]] = []

    def take() -> tuple[Any, ...] | None:
        items = list(queue)
        queue.clear()
        return ("batch", *items) if items else None

    link = EngineLink("test", echo_child, ("hello",), take=take, on_message=got.append)
    assert link.ready[0] == "hello" and link.ready[1] != os.getpid()
    queue.extend([1, 2, 3])
    wait_until(lambda: got)
    assert got[0] == ("echo", 1, 2, 3)
    link.close(timeout=5.0)
    assert not link.alive and link.failed is None


def test_an_engine_that_refuses_to_start_raises_its_own_words() -> None:
    with pytest.raises(OutputUnavailable, match=r"^no sound card here$"):
        EngineLink("test", refusing_child, (), take=lambda: None)


def test_an_engine_that_exits_at_start_is_named_with_its_exit_code() -> None:
    with pytest.raises(OutputUnavailable, match=r"^test engine exited at start \(exit code 3\)$"):
        EngineLink("test", exiting_child, (), take=lambda: None)


def test_a_dead_engine_is_reported_once_and_the_bridge_side_goes_on(caplog: Any) -> None:
    link = EngineLink("test", echo_child, ("hi",), take=lambda: ("ping",), on_message=lambda m: None)
    os.kill(link.ready[1], 9)
    wait_until(lambda: link.failed is not None)
    assert link.failed is not None and link.failed.startswith("test engine process exited")
    assert link.feed() is False
    link.close(timeout=0.5)  # never raises, never hangs
    assert sum("the bridge goes on without it" in r.getMessage() for r in caplog.records) == 1
