"""The trainsound bridge: OSC in → mapping → outputs.

What a reader follows from OSC to sound is flat here, in the order data flows:

- :mod:`.osc_in` — the UDP/TCP receive loop (the daemon's hot path), control messages answered
- :mod:`.pipeline` — datagrams → validated events → the mapping → every output
- :mod:`.mapping` — pure rules (:mod:`.rules`, :mod:`.scales`): events → normalised values → MIDI bytes
- :mod:`.outputs` — one module per output, loaded lazily by name
- :mod:`.config`, :mod:`.presets`, :mod:`.replay`, :mod:`.render`, :mod:`.cli`

and the rest is in folders named for what they are: :mod:`.wire` (bytes on the wire), :mod:`.sound`
(synthesis and engine processes), :mod:`.service` (the daemon's lifecycle), :mod:`.demo`.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
