"""A TOML table being validated: typed getters whose errors name the key path, and unknown keys refused.

Used by the config and by every output that owns a table of its own (``[sine]``, ``[pyo]`` …).

>>> t = Table({"gain": 2}, "sine")
>>> t.number("gain", 0.5, 0.0, 1.0)
Traceback (most recent call last):
...
trainsound.bridge.errors.ConfigError: sine.gain must be in 0..1, got 2
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from .errors import ConfigError
from .wire.protocol import DEFAULT_HOST

T = TypeVar("T")

#: While a whole config file is validated (:func:`collecting`): where the errors go, so that every one is
#: reported at once; ``None``: the first error is raised.
_ERRORS: ContextVar[list[str] | None] = ContextVar("trainsound_config_errors", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Validate with every error collected (each getter gives its default after recording its error); the
    caller raises them together. Nested use shares the outer list."""
    errors = _ERRORS.get()
    if errors is not None:
        yield errors
        return
    errors = []
    token = _ERRORS.set(errors)
    try:
        yield errors
    finally:
        _ERRORS.reset(token)


def attempt(fn: Callable[[], T], fallback: T) -> T:
    """``fn()``; while :func:`collecting`, a :class:`ConfigError` is recorded and ``fallback`` returned.

    >>> with collecting() as errors:
    ...     attempt(lambda: Table({"gain": 2}, "sine").number("gain", 0.5, 0.0, 1.0), 0.5), errors
    (0.5, ['sine.gain must be in 0..1, got 2'])
    """
    try:
        return fn()
    except ConfigError as err:
        errors = _ERRORS.get()
        if errors is None:
            raise
        errors.append(str(err))
        return fallback


def did_you_mean(name: str, known: set[str]) -> str | None:
    """The known key closest to a misspelt one, if any is close.

    >>> did_you_mean("listn", {"listen", "allow"}), did_you_mean("zzz", {"listen"})
    ('listen', None)
    """
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return close[0] if close else None


class Table:
    """A TOML table being validated; remembers which keys were read.

    While :func:`collecting`, a bad value is recorded and its default used, so every error of a file is
    found in one pass.
    """

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            self._error(f"{path} must be a table, got {data!r}")
            data = {}
        self.data = data
        self.path = path
        self.used: set[str] = set()

    @staticmethod
    def _error(message: str) -> None:
        errors = _ERRORS.get()
        if errors is None:
            raise ConfigError(message)
        errors.append(message)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str, default: Any) -> Any:
        self.used.add(name)
        return self.data.get(name, default)

    def number(self, name: str, default: float, lo: float = -math.inf, hi: float = math.inf) -> float:
        v = self.raw(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return self._bad(default, f"{self.key(name)} must be a number, got {v!r}")
        if not lo <= v <= hi:
            return self._bad(default, f"{self.key(name)} must be in {lo:g}..{hi:g}, got {v!r}")
        return float(v)

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.raw(name, default)
        if isinstance(v, bool) or not isinstance(v, int):
            return self._bad(default, f"{self.key(name)} must be an integer, got {v!r}")
        if not lo <= v <= hi:
            return self._bad(default, f"{self.key(name)} must be in {lo}..{hi}, got {v!r}")
        return v

    def boolean(self, name: str, default: bool) -> bool:
        v = self.raw(name, default)
        if not isinstance(v, bool):
            return self._bad(default, f"{self.key(name)} must be true or false, got {v!r}")
        return v

    def string(self, name: str, default: str, choices: tuple[str, ...] | None = None) -> str:
        v = self.raw(name, default)
        if not isinstance(v, str):
            return self._bad(default, f"{self.key(name)} must be a string, got {v!r}")
        if choices is not None and v not in choices:
            return self._bad(default, f"{self.key(name)} must be one of {', '.join(choices)}; got {v!r}")
        return v

    def pair(self, name: str, default: tuple[float, float]) -> tuple[float, float]:
        v = self.raw(name, list(default))
        if (
            not isinstance(v, list)
            or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        ):
            return self._bad(default, f"{self.key(name)} must be a list of two numbers, got {v!r}")
        if not v[0] < v[1]:
            return self._bad(default, f"{self.key(name)} must be [low, high] with low < high, got {v!r}")
        return float(v[0]), float(v[1])

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        v = self.raw(name, list(default))
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return self._bad(default, f"{self.key(name)} must be a list of strings, got {v!r}")
        return tuple(v)

    def _bad(self, default: Any, message: str) -> Any:
        self._error(message)
        return default

    def finish(self) -> None:
        """Refuse keys no getter asked for (every one, each with the known key it is closest to)."""
        for name in sorted(set(self.data) - self.used, key=str):
            near = did_you_mean(str(name), self.used)
            hint = f"; did you mean {self.key(near)}?" if near is not None else ""
            self._error(f"{self.key(name)} is not a known key (value {self.data[name]!r}){hint}")


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
