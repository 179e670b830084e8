"""Where the bridge's config comes from, so that ``SIGHUP`` can read it again.

A :class:`ConfigSource` is the config file (given with ``--config``, or the XDG
default when it exists) plus the command-line overrides, which keep winning
after a reload. Loading is all-or-nothing: an invalid file raises
:class:`~trainsound.bridge.errors.ConfigError` naming the file and the key, and
the caller keeps the config it has.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as cfgmod

CONFIG_NAME = "trainsound/bridge.toml"
SYSTEM_CONFIG = Path("/etc/trainsound/bridge.toml")


def xdg_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/trainsound/bridge.toml`` (default ``~/.config/...``).

    >>> str(xdg_config_path({"XDG_CONFIG_HOME": "/x"}))
    '/x/trainsound/bridge.toml'
    """
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / CONFIG_NAME


def default_config_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The XDG config file if it exists, else ``None`` (the built-in config)."""
    p = xdg_config_path(env)
    return p if p.is_file() else None


@dataclass(frozen=True)
class ConfigSource:
    """A config file (or none: built-in) and the transformations the command line applies on top."""

    path: str | None
    overrides: tuple[Callable[[cfgmod.Config], cfgmod.Config], ...] = field(default=())

    def load(self) -> cfgmod.Config:
        """Read and validate afresh; raises ``ConfigError`` (file and key named) if invalid."""
        cfg = cfgmod.load(self.path) if self.path else cfgmod.default()
        for f in self.overrides:
            cfg = f(cfg)
        return cfg

    def describe(self) -> str:
        return self.path or "<built-in default>"


def restart_needed(old: cfgmod.Config, new: cfgmod.Config) -> list[str]:
    """Keys whose change a reload cannot apply (sockets and outputs stay as they are).

    >>> restart_needed(cfgmod.default(), cfgmod.with_bridge(cfgmod.default(), listen=("127.0.0.1", 1)))
    ['bridge.listen']
    """
    out = []
    for key in ("listen", "rcvbuf", "tcp", "tcp_max_connections", "tcp_max_frame"):
        if getattr(old.bridge, key) != getattr(new.bridge, key):
            out.append(f"bridge.{key}")
    if old.midi != new.midi:
        out.append("midi")
    if dict(old.outputs) != dict(new.outputs):
        out.append("output sections")
    return out
