"""Waiting for an answer in a benchmark: a slow one is reported (``no answer within N s``) and the run
goes on, so one busy moment on a shared machine costs a figure, not the whole run.

Status goes over TCP, as ``trainsound status`` asks: the bridge serves TCP every tick, so the
question does not queue behind the UDP datagrams a benchmark floods it with.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from trainsound.bridge.errors import TrainsoundError
from trainsound.bridge.service.status import query


def no_answer(what: str, timeout: float) -> None:
    print(f"  {what}: no answer within {timeout:g} s; carrying on", flush=True)


def status(port: int, timeout: float = 5.0, what: str = "status") -> dict[str, Any] | None:
    """The bridge's status, or ``None`` after printing that it did not answer in time."""
    try:
        return query("127.0.0.1", port, timeout)
    except TrainsoundError:
        no_answer(what, timeout)
        return None


def timed_status(port: int, timeout: float = 5.0, what: str = "status") -> tuple[float, dict[str, Any] | None]:
    """``(round-trip seconds, status or None)``."""
    t0 = time.perf_counter()
    st = status(port, timeout, what)
    return time.perf_counter() - t0, st


def get(q: Any, timeout: float, what: str) -> Any:
    """``q.get`` from a multiprocessing queue, or ``None`` after printing that nothing came in time."""
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        no_answer(what, timeout)
        return None


def recv(conn: Any, timeout: float, what: str) -> Any:
    """``conn.recv`` from a multiprocessing pipe, or ``None`` after printing that nothing came in time."""
    if conn.poll(timeout):
        return conn.recv()
    no_answer(what, timeout)
    return None
