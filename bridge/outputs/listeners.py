"""Who starts listening to the bridge's virtual JACK port: a DAW or synth that connects after start.

An MPE receiver learns the zone from the MPE Configuration Message (RPN 6) and each member's bend
range from RPN 0; one that connects to ``trainsound:out`` after the bridge declared them never heard
them. The MPE specification has the sender declare the zone; it gives a receiver no way to ask for it,
and an MCM (re)initialises the zone: the receiver returns the zone's bend ranges to their defaults and
may end the zone's notes. So the zone is *not* re-sent on a timer (every listener already there would
be re-initialised again and again, its notes cut): it is re-sent when a new listener connects — the one
moment a receiver lacks it — followed by the members' bend ranges and every sounding voice's current
bend, so a listener that re-initialised plays on at the right pitch.

JACK tells every client of port connections (``jack_set_port_connect_callback``, through JACK-Client,
part of the ``bridge`` extra on Linux). ALSA's sequencer announces subscriptions on its system port,
which python-rtmidi does not pass on; there (and on CoreMIDI) a reload (``SIGHUP``) re-declares the zone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..errors import OutputUnavailable

log = logging.getLogger(__name__)


class JackListeners:
    """Calls ``on_new(other_port)`` from JACK's notification thread when a port connects to ``port``.

    A JACK client with no ports of its own (``<name>``); the callback must be cheap (it only flags).
    """

    def __init__(self, port: str, name: str, on_new: Callable[[str], None]) -> None:
        try:
            import jack
        except (ImportError, OSError) as err:  # OSError: JACK-Client found no libjack
            raise OutputUnavailable(f"JACK-Client is needed to see a late listener ({err}): "
                                    "pip install 'trainsound[bridge]'") from err
        from ..sound.jackserver import quiet_jack

        quiet_jack()  # JACK-Client loads the system libjack: its chatter goes to DEBUG like rtmidi's
        self.port = port

        def connected(a: Any, b: Any, connect: bool) -> None:
            if not connect or a is None or b is None:
                return
            if a.name == port or b.name == port:
                on_new(b.name if a.name == port else a.name)

        try:
            self.client = jack.Client(name, no_start_server=True)
        except jack.JackError as err:
            raise OutputUnavailable(f"cannot watch {port}'s connections: {err}") from err
        self.client.set_port_connect_callback(connected, only_available=False)
        self.client.activate()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.deactivate()
        with contextlib.suppress(Exception):
            self.client.close()
