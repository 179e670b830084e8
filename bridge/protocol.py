"""Moved to :mod:`trainsound.bridge.wire.protocol`; this name stays importable (docs/protocol.md showed it)."""

from .wire.protocol import *  # noqa: F403
from .wire.protocol import PROTOCOL_VERSION, Event, ProtocolError, parse_event  # noqa: F401
