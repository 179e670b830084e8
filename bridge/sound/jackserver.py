"""Is a JACK server there? Answered without opening a JACK client (which would reorder JACK's graph).
And libjack's own stderr chatter, routed to the log (:func:`quiet_jack`).

Used by the live outputs that wait for JACK (MIDI, pyo): they start or reconnect when it appears,
and never start a jackd themselves (``JACK_NO_START_SERVER=1``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import socket
from typing import Any

log = logging.getLogger(__name__)


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


_jack_quiet: list[Any] = []  # the ctypes callback, kept alive
_jack_quiet_done: set[str] = set()


def loaded_libjacks() -> list[str]:
    """Paths of every libjack mapped into this process (Linux: ``/proc/self/maps``).

    python-rtmidi's wheel bundles its own libjack (``python_rtmidi.libs/libjack-<hash>.so``), so the
    system's ``libjack.so.0`` found by name is not the one that prints.
    """
    found: list[str] = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rstrip("\n").split(maxsplit=5)[5:]
                if path and os.path.basename(path[0]).startswith("libjack") and path[0] not in found:
                    found.append(path[0])
    except OSError:
        pass
    return [p for p in found if "libjacknet" not in p and "libjackserver" not in p]


def quiet_jack() -> None:
    """Route libjack's own stderr chatter ("Cannot connect to server socket") to DEBUG.

    Done on every libjack actually loaded (after ``import rtmidi``), the bundled one included; where
    ``/proc`` does not exist, on the system library found by name.
    """
    libs = loaded_libjacks() or [n for n in [ctypes.util.find_library("jack")] if n]
    cb_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
    for name in libs:
        if name in _jack_quiet_done:
            continue
        try:
            lib = ctypes.CDLL(name)
            if not _jack_quiet:
                _jack_quiet.append(cb_type(lambda msg: log.debug("libjack: %s", msg.decode(errors="replace"))))
            lib.jack_set_error_function(_jack_quiet[0])
            lib.jack_set_info_function(_jack_quiet[0])
            _jack_quiet_done.add(name)
        except (OSError, AttributeError):
            pass
