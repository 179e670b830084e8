"""What travels between processes, as bytes: standard library only, shared by the bridge and the clients.

- :mod:`.osc` — OSC 1.0 messages and bundles (strict decoding, template-friendly encoding);
- :mod:`.slip` — OSC 1.1 stream framing for TCP;
- :mod:`.protocol` — the ``/nn`` protocol: names, limits, defaults, event kinds → :class:`~.protocol.Event`;
- :mod:`.session` — the session-record file format (``--record``);
- :mod:`.midi` — MIDI status bytes, built and read in one place.
"""
