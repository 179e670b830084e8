"""What the bridge shows of itself: a live feed of runs, voices, alarms and counters.

``feed`` collects it on the receive thread (cheap dict stores, nothing more);
``snapshot`` turns it into plain JSON-able data (pure); ``server`` serves the
listening page from its own thread (aiohttp, imported only with ``--web``);
``options`` is the ``[web]`` table and the access rules. ``oscquery`` serves the address space to OSC
tools (OSCQuery over HTTP and WebSocket, zeroconf): ``oscquery_tree`` builds it (pure), ``oscquery_options``
is the ``[oscquery]`` table.
"""
