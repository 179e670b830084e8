"""The one small error hierarchy of trainsound.

Only the CLI's ``main()`` turns these into exit codes and one-line messages;
library code raises them with words that name the thing at fault.
"""

from __future__ import annotations


class TrainsoundError(Exception):
    """Base class of every error trainsound raises on purpose."""


class ConfigError(TrainsoundError, ValueError):
    """A configuration value is wrong; the message names the key path and value."""


class OutputUnavailable(TrainsoundError, OSError):
    """An output cannot be opened (missing library, no device, port gone)."""


class AddressError(TrainsoundError, ValueError):
    """The bridge's address is not ``host:port`` (or ``tcp://host:port``); the message names where it came from."""


class SessionFileError(TrainsoundError, ValueError):
    """A session recording cannot be read; the message names the file."""


class OSCDecodeError(TrainsoundError, ValueError):
    """A datagram is not valid OSC. ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def write_failure(err: OSError, path: object) -> str:
    """Why a file write failed, for status and the log: ``disk full: out.wav`` names the cause first.

    >>> import errno
    >>> write_failure(OSError(errno.ENOSPC, "No space left on device"), "out.wav")
    'disk full: out.wav: No space left on device'
    """
    import errno

    cause = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit"}.get(
        err.errno or 0, "cannot write"
    )
    return f"{cause}: {path}: {err.strerror or err}"
