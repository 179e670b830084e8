"""systemd's notify protocol without a dependency: one datagram to ``$NOTIFY_SOCKET``.

``Type=notify`` units learn that the bridge is ready (``READY=1``), what it is
doing (``STATUS=…``), that it is alive (``WATCHDOG=1``, when the unit sets
``WatchdogSec``) and that it is stopping (``STOPPING=1``). Outside systemd
(no ``$NOTIFY_SOCKET``) every call is a cheap no-op.

>>> n = Notifier(env={})
>>> n.enabled, n.notify("READY=1"), n.watchdog_interval
(False, False, None)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Talks to the service manager named by ``NOTIFY_SOCKET`` (a path, or ``@`` for the abstract namespace)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if path.startswith("@"):
            # Abstract namespace: a leading NUL instead of '@'.
            self.address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self.address = path
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process meant to ping; a child that inherited the variables must not.
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # Ping at half the timeout, as sd_watchdog_enabled(3) recommends.
            self.watchdog_interval = int(usec) / 2e6
        self._sock: socket.socket | None = None
        self._next_watchdog = 0.0
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False (logged once) if there is no manager or it fails."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError as err:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self.address, err)
                self._failed = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", f"STATUS={status}") if status else self.notify("READY=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self, now: float) -> bool:
        """Ping the watchdog if one is configured and half its interval has passed (call often)."""
        if self.watchdog_interval is None or now < self._next_watchdog:
            return False
        self._next_watchdog = now + self.watchdog_interval
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
