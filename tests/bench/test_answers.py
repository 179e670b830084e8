"""Benchmarks survive a slow answer (issue 16 #24): a bridge that stops answering is reported
(``no answer within N s``) and the run goes on — checked against a real bridge process frozen with SIGSTOP."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _answers
import bench_bridge


@pytest.fixture
def frozen() -> Iterator[Any]:
    """Freeze a process (SIGSTOP) for the test; thawed at teardown so it can be stopped cleanly."""
    pids: list[int] = []

    def freeze(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        pids.append(pid)

    yield freeze
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_a_status_nobody_answers_is_reported_and_none(bridge_proc: Any, frozen: Any, capsys: Any) -> None:
    b = bridge_proc(["--no-midi"])
    assert _answers.status(b.port, 1.0)["accepted"] == 0
    frozen(b.proc.pid)
    assert _answers.status(b.port, 0.5, "status before the flood") is None
    assert capsys.readouterr().out == "  status before the flood: no answer within 0.5 s; carrying on\n"


def test_bench_bridge_trial_reports_a_silent_bridge_and_goes_on(frozen: Any, capsys: Any) -> None:
    """Before: ``Bridge.status`` raised TimeoutError out of the benchmark (one crash in two runs)."""
    b = bench_bridge.Bridge()
    b.answer_timeout = 0.5
    try:
        assert b.counts() is not None
        frozen(b.proc.pid)
        assert bench_bridge.trial(b, 1000, 0.1, "plain") is None
        # sustained() closes each receiver after its trial: thaw it first so that SIGTERM is heard.
        thawing = SimpleNamespace(port=b.port, counts=b.counts, close=lambda: os.kill(b.proc.pid, signal.SIGCONT))
        best, lines = bench_bridge.sustained(lambda: thawing, "plain", [1000, 2000], 0.1)
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
        b.close()
    assert best == 0.0
    assert lines == ["    asked     1,000/s  no answer in time: rate not counted, stopping here"]
    out = capsys.readouterr().out
    assert out.count("status: no answer within 0.5 s; carrying on") == 2
