"""The slow-reply worker: one build shared, a pipelined repeat answered once, a later request every time."""

from __future__ import annotations

from typing import Any

from support import wait_until

from trainsound.bridge.service.replies import MAX_AGE, REASK, SlowReplies


def test_a_peer_that_asks_after_its_reply_gets_it_again_but_a_pipelined_repeat_does_not() -> None:
    """Before: ``top --refresh 0.1`` got every other snapshot only after its 1 s timeout (a request that
    followed the reply within 0.25 s was taken for a pipelined repeat)."""
    now = [100.0]
    sent: list[tuple[bytes, Any]] = []
    slow = SlowReplies(lambda reply, to: sent.append((reply, to)), clock=lambda: now[0])
    builds: list[int] = []

    def build(parts: int) -> bytes:
        builds.append(parts)
        return b"reply %d" % parts

    try:
        slow.ask("k", lambda: 1, build, "peer")
        slow.ask("k", lambda: 2, build, "peer")  # pipelined behind the first, before it is built
        wait_until(lambda: slow.flush() or sent, 5.0, "the build")
        assert sent == [(b"reply 1", "peer")] and builds == [1] and slow.coalesced == 1
        slow.ask("k", lambda: 3, build, "peer")  # still in the socket when the reply went: answered once
        assert len(sent) == 1 and slow.coalesced == 2
        now[0] += 2 * REASK  # asked after the reply came back: the cached reply again, not built anew
        slow.ask("k", lambda: 4, build, "peer")
        slow.ask("k", lambda: 5, build, "other")
        assert sent[1:] == [(b"reply 1", "peer"), (b"reply 1", "other")] and builds == [1]
        now[0] += MAX_AGE  # too old: built afresh
        slow.ask("k", lambda: 6, build, "peer")
        wait_until(lambda: slow.flush() or len(sent) == 4, 5.0, "the second build")
        assert sent[3] == (b"reply 6", "peer") and builds == [1, 6]
    finally:
        slow.close()
