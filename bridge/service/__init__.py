"""Running the bridge as a service: the daemon's lifecycle, config reload, systemd's notify protocol, and
the ``trainsound status`` client."""
