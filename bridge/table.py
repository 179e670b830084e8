"""A TOML table being validated: typed getters whose errors name the key path, and unknown keys refused.

Used by the config and by every output that owns a table of its own (``[sine]``, ``[pyo]`` …).

>>> t = Table({"gain": 2}, "sine")
>>> t.number("gain", 0.5, 0.0, 1.0)
Traceback (most recent call last):
...
trainsound.bridge.errors.ConfigError: sine.gain must be in 0..1, got 2
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .wire.protocol import DEFAULT_HOST


class Table:
    """A TOML table being validated; remembers which keys were read."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} must be a table, got {data!r}")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str, default: Any) -> Any:
        self.used.add(name)
        return self.data.get(name, default)

    def number(self, name: str, default: float, lo: float = -math.inf, hi: float = math.inf) -> float:
        v = self.raw(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{self.key(name)} must be a number, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(f"{self.key(name)} must be in {lo:g}..{hi:g}, got {v!r}")
        return float(v)

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.raw(name, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{self.key(name)} must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(f"{self.key(name)} must be in {lo}..{hi}, got {v!r}")
        return v

    def boolean(self, name: str, default: bool) -> bool:
        v = self.raw(name, default)
        if not isinstance(v, bool):
            raise ConfigError(f"{self.key(name)} must be true or false, got {v!r}")
        return v

    def string(self, name: str, default: str, choices: tuple[str, ...] | None = None) -> str:
        v = self.raw(name, default)
        if not isinstance(v, str):
            raise ConfigError(f"{self.key(name)} must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise ConfigError(f"{self.key(name)} must be one of {', '.join(choices)}; got {v!r}")
        return v

    def pair(self, name: str, default: tuple[float, float]) -> tuple[float, float]:
        v = self.raw(name, list(default))
        if (
            not isinstance(v, list)
            or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        ):
            raise ConfigError(f"{self.key(name)} must be a list of two numbers, got {v!r}")
        if not v[0] < v[1]:
            raise ConfigError(f"{self.key(name)} must be [low, high] with low < high, got {v!r}")
        return float(v[0]), float(v[1])

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        v = self.raw(name, list(default))
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{self.key(name)} must be a list of strings, got {v!r}")
        return tuple(v)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])} is not a known key (value {self.data[unknown[0]]!r})")


def parse_hostport(text: str, key: str, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """``"HOST:PORT"``, ``":PORT"`` or ``"[v6]:PORT"`` → ``(host, port)``.

    >>> parse_hostport("127.0.0.1:9150", "listen")
    ('127.0.0.1', 9150)
    """
    m = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<p1>\d+)|(?P<host>[^:]*):(?P<p2>\d+)", text.strip())
    if not m:
        raise ConfigError(f"{key} must be HOST:PORT, got {text!r}")
    host = m["v6"] or m["host"] or default_host
    port = int(m["p1"] or m["p2"])
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key} port must be in 1..65535, got {port}")
    return host, port
