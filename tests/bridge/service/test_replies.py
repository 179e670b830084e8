"""The slow-reply worker: one build shared, pipelined repeats answered once more, a later request every time."""

from __future__ import annotations

from typing import Any

from support import wait_until

from trainsound.bridge.service.replies import MAX_AGE, REASK, SlowReplies


def test_a_peer_that_asks_again_is_always_answered_but_pipelined_repeats_only_once() -> None:
    """Before: ``top --refresh 0.1`` got every other snapshot only after its 1 s timeout (a request that
    followed the reply within 0.25 s was taken for a pipelined repeat); then a key press in ``top`` (an ask
    within 0.05 s of the reply) was never answered, and the ``f`` after it was not sent."""
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
        slow.ask("k", lambda: 3, build, "peer")  # asked again at once (pipelined, or a quick client): later
        slow.ask("k", lambda: 3, build, "peer")  # and again: that later reply answers both
        assert len(sent) == 1 and slow.coalesced == 2 and slow.flush() == 0
        now[0] += REASK
        assert slow.flush() == 1 and sent[1] == (b"reply 1", "peer") and slow.flush() == 0
        sent.pop()
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
