"""The control replies' budget: one per peer and one per transport, the same for UDP and TCP.

Every control message a peer may send costs the bridge a reply built on its receive loop, so replies
are rationed before anything is built: a peer (a UDP sender's address, a TCP connection) gets
:data:`PEER_RATE` replies a second that cost building (a ping's pong costs nothing to build and counts
only globally), and all peers of one transport together :data:`RATE`. UDP and TCP
have a global budget each, so a forged-source UDP flood cannot take the TCP status away from
``trainsound top``. What is refused is counted (``reply_rate_limited``) by the caller.

>>> b = ReplyBudget(rate=3.0, burst=3.0, peer_rate=2.0, peer_burst=2.0, clock=lambda: 0.0)
>>> [b.take("a") for _ in range(3)], b.take("b"), b.take("c", cheap=True)
([None, None, 'peer'], None, 'all')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from ..ratelog import TokenBucket

#: Replies a second over one transport (all its peers together), and the burst allowed.
RATE = 100.0
BURST = 100.0
#: Replies a second to one peer, and its burst (``top`` asks once a second; a script polling status 10×/s fits).
PEER_RATE = 20.0
PEER_BURST = 20.0
#: Peers remembered per transport; at the bound the table starts afresh (the global budget still holds).
MAX_PEERS = 1024


class ReplyBudget:
    """Token buckets for one transport's control replies: global, and one per peer key."""

    def __init__(self, name: str = "", rate: float = RATE, burst: float = BURST, peer_rate: float = PEER_RATE,
                 peer_burst: float = PEER_BURST, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        """The transport, for the log (``UDP``, ``TCP``)."""
        self.rate, self.peer_rate = rate, peer_rate
        self._peer_burst = peer_burst
        self._clock = clock
        self._all = TokenBucket(rate, burst, clock)
        self._peers: dict[Hashable, TokenBucket] = {}

    def take(self, peer: Hashable, cheap: bool = False) -> str | None:
        """Spend one reply for ``peer`` (``cheap``: from the global budget only); ``None`` if it may be sent,
        else which budget is spent (``"peer"``, ``"all"``)."""
        if cheap:
            return None if self._all.take() else "all"
        bucket = self._peers.get(peer)
        if bucket is None:
            if len(self._peers) >= MAX_PEERS:
                self._peers.clear()
            bucket = self._peers[peer] = TokenBucket(self.peer_rate, self._peer_burst, self._clock)
        if not bucket.take():
            return "peer"
        return None if self._all.take() else "all"

    def forget(self, peer: Hashable) -> None:
        """A TCP connection closed: its bucket goes with it."""
        self._peers.pop(peer, None)

    def why(self, spent: str) -> str:
        """The log's words for what :meth:`take` returned."""
        what = f"{self.name} replies/s" if self.name else "replies/s"
        return f"over {self.peer_rate:g} {what} to one peer" if spent == "peer" else f"over {self.rate:g} {what}"
