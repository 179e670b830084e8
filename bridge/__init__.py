"""The trainsound bridge: OSC in → mapping → outputs.

Pipeline, in the order data flows:

- :mod:`.osc_codec`, :mod:`.protocol` — datagrams → validated :class:`~.protocol.Event`
- :mod:`.osc_in` — the UDP/TCP receive loop (the daemon's hot path)
- :mod:`.mapping` — pure rules: events → normalised values → MIDI bytes
- :mod:`.pipeline` — feeds events through the engine to the outputs
- :mod:`.outputs` — one module per output, loaded lazily by name
- :mod:`.daemon`, :mod:`.cli` — lifecycle and the ``trainsound`` command
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
