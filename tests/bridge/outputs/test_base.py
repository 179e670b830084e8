"""What every output shares: the closed guard and an idempotent close, in one place."""

from __future__ import annotations

from collections.abc import Sequence

from trainsound.bridge.mapped import Mapped
from trainsound.bridge.outputs import OutputSpec, build_outputs
from trainsound.bridge.outputs.base import BaseOutput, Output
from trainsound.bridge.wire.protocol import Event


class Counting(BaseOutput):
    name = "counting"

    def __init__(self) -> None:
        self.handled = self.ticks = self.closes = 0

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        self.handled += 1

    def _tick(self, now: float) -> None:
        self.ticks += 1

    def _close(self) -> None:
        self.closes += 1


def test_after_close_nothing_reaches_the_output_and_close_runs_once() -> None:
    out = Counting()
    assert isinstance(out, Output)
    out.handle(None, [])
    out.tick(0.0)
    out.close()
    out.close()
    out.handle(None, [])
    out.tick(1.0)
    assert (out.handled, out.ticks, out.closes) == (1, 1, 1)
    assert out.describe() == "counting" and out.health() == {"ok": False}


def test_an_output_built_by_name_is_a_base_output(tmp_path: object) -> None:
    from trainsound.bridge.config import default

    [rec] = build_outputs(default(), [OutputSpec("record", {"path": f"{tmp_path}/s.tsr"}, required=True)])
    assert isinstance(rec, BaseOutput)
    rec.close()
    rec.close()
