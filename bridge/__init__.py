"""The trainsound bridge: OSC in → mapping → outputs.

Folders named for their family, in the order data flows (docs/architecture.md):

- :mod:`.receive` — the UDP/TCP receive loop (the daemon's hot path), sockets, counters
- :mod:`.pipeline` — datagrams → validated events → the mapping → every output
- :mod:`.mapping` — the pure engine, its rules, scales and voice groups
- :mod:`.alarms` — the fault detectors, their watch and options, alarms as mapped values
- :mod:`.outputs` — one module per output, loaded lazily by name
- :mod:`.sound` — synthesis below the outputs; :mod:`.wire` — bytes between processes
- :mod:`.replay` — recordings played back (``replay``, ``render``, ``--alarms``)
- :mod:`.service` — the daemon's lifecycle and the commands that talk to it; :mod:`.web` — its page
- :mod:`.config` (the frozen config and its presets), :mod:`.cli`, and the apps :mod:`.tb`,
  :mod:`.demo`, :mod:`.netsounds`

At the top only what spans the families: the CLI, the pipeline, errors, the config's table reader,
the ``Mapped`` value every family passes on, rate-limited logging, and the ``protocol`` import path.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
