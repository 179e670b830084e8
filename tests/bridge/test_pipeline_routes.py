"""The known-address path (``wire/routes``, issue 23) changes nothing: a recorded real GPT-2 session (HF
Trainer through a real bridge) fed as the datagrams it came in, once along the routes and once along the
full decode-and-validate path, gives the same counters, recording, mapped values and incidents."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from realruns import record_run

from trainsound.bridge.config import default
from trainsound.bridge.mapped import Mapped
from trainsound.bridge.outputs.base import BaseOutput
from trainsound.bridge.outputs.record import RecordOut
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.replay.alarms import incidents
from trainsound.bridge.web.feed import Feed
from trainsound.bridge.wire.osc import encode_bundle, encode_message
from trainsound.bridge.wire.protocol import Event
from trainsound.bridge.wire.session import iter_records

SENDER = ("127.0.0.1", 40000)


class Tape(BaseOutput):
    """Every call an output gets, as comparable text (NaN-safe)."""

    name = "tape"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        ev = None if event is None else (event.t, event.address, event.values, event.raw)
        self.calls.append(repr((ev, [tuple(m) for m in mapped])))


@pytest.fixture(scope="module")
def gpt2_datagrams(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[float, bytes]]:
    """The session's messages regrouped into datagrams: consecutive records at one time were one bundle."""
    run = record_run("gpt2", tmp_path_factory.mktemp("gpt2"))
    groups: list[tuple[float, list[bytes]]] = []
    for t, raw in iter_records(run.record):
        if groups and groups[-1][0] == t:
            groups[-1][1].append(raw)
        else:
            groups.append((t, [raw]))
    # A few hostile datagrams among them: a known address with other type tags, a truncated bundle, a NaN.
    mid = len(groups) // 2
    groups.insert(mid, (groups[mid][0], [encode_message("/nn/gpt2/loss", ["x"])]))
    groups.insert(mid + 1, (groups[mid][0], [encode_message("/nn/gpt2/loss", [math.nan])]))
    out = [(t, raws[0] if len(raws) == 1 else encode_bundle(raws)) for t, raws in groups]
    out.insert(mid, (groups[mid][0], encode_bundle([encode_message("/nn/gpt2/loss", [1.0])])[:-3]))
    return out


def _run(datagrams: list[tuple[float, bytes]], fast: bool, folder: Path) -> dict[str, Any]:
    cfg = default()
    rec = RecordOut(cfg, path=str(folder / f"{fast}.tsr"))
    tape = Tape()
    p = Pipeline(cfg, [rec, Feed(cfg), tape])
    p.fast = fast
    for t, data in datagrams:
        p.feed_datagram(data, t, SENDER)
        p.tick(t)
    p.close(datagrams[-1][0] + 5.0)
    stats = p.stats.snapshot()
    return {
        "stats": {k: v for k, v in stats.items() if k not in ("uptime",)},
        "counters": dataclasses.asdict(p.engine.counters),
        "incidents": [i.as_dict() for i in incidents(p)],
        "outputs": tape.calls,
        "recording": list(iter_records(rec.path)),
        "routes": len(p.routes),
        "known": sum(p.routes.split(d) is not None for _, d in datagrams),
    }


def test_routes_change_nothing_on_a_recorded_gpt2_session(gpt2_datagrams: list[tuple[float, bytes]],
                                                           tmp_path: Path) -> None:
    full = _run(gpt2_datagrams, False, tmp_path)
    fast = _run(gpt2_datagrams, True, tmp_path)
    assert fast["routes"] > 30  # every address the run sends
    assert fast["known"] >= 0.9 * len(gpt2_datagrams)  # nearly every datagram took the routes
    for key in ("stats", "counters", "incidents", "recording"):
        assert fast[key] == full[key], key
    assert len(fast["outputs"]) == len(full["outputs"])
    assert fast["outputs"] == full["outputs"]
    assert fast["stats"]["dropped_total"] >= 2, "the hostile datagrams were counted"
    assert full["counters"]["mapped"] > 100 and full["recording"]
