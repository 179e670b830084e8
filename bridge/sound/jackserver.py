"""Is a JACK server there? Answered without opening a JACK client (which would reorder JACK's graph).

Used by the live outputs that wait for JACK (MIDI, pyo): they start or reconnect when it appears,
and never start a jackd themselves (``JACK_NO_START_SERVER=1``).
"""

from __future__ import annotations

import os
import socket


def server_socket() -> str:
    """The JACK2 server's socket path for ``JACK_DEFAULT_SERVER`` (default ``default``)."""
    name = os.environ.get("JACK_DEFAULT_SERVER", "default")
    return f"/dev/shm/jack_{name}_{os.getuid()}_0"


def jack_server_id() -> tuple[int, int] | None:
    """Identity of the running JACK2 server's socket (inode, mtime), or None if not found.

    A restarted jackd creates its socket anew, so a changed identity means our
    client is dead. Checking this costs one ``stat``; opening a probe JACK client
    instead would reorder JACK's graph and stall its process cycle every time.
    """
    try:
        st = os.stat(server_socket())
    except (OSError, AttributeError):
        return None
    return st.st_ino, st.st_mtime_ns


def jack_server_listening() -> bool:
    """Whether the JACK2 server behind :func:`jack_server_id`'s socket still accepts connections.

    A jackd killed with SIGKILL leaves its socket file behind (same identity), so the file alone says
    nothing; a refused ``connect`` says the server is gone. The connection is closed at once, before
    any request: jackd's socket server just drops it (no client is opened, the graph is untouched).
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.2)
    try:
        s.connect(server_socket())
    except (ConnectionRefusedError, FileNotFoundError):
        return False  # nobody listens: the server is gone
    except OSError:
        return True  # a busy moment (timeout, full backlog) is not a dead server
    finally:
        s.close()
    return True
