"""Scalars of one step → one step's protocol messages (pure; used by ``follow`` and by ``render``).

>>> from .tags import TagTable
>>> step_messages(3, [("train/loss", 0.5), ("grad_norm/fc1", 1.5), ("acc", 0.9)], TagTable.default())
[('step', (3,)), ('loss', (0.5,)), ('grad_norm/fc1', (1.5,)), ('metric/accuracy', (0.9,))]
"""

from __future__ import annotations

from collections.abc import Iterable

from .tags import TagTable

__all__ = ["StepAssembler", "step_messages"]

Message = tuple[str, tuple[float | int, ...]]


def step_messages(step: int, values: Iterable[tuple[str, float]], table: TagTable) -> list[Message]:
    """``step`` first, then one message per mapped tag (the last value of a tag wins); ``ignore`` drops a tag."""
    out: dict[str, float] = {}
    for tag, value in values:
        target = table.target(tag)
        if target != "ignore":
            out[target] = value
    # The step index is an OSC int32: wrap absurd steps rather than fail.
    return [("step", (int(step) % (1 << 31),)), *((k, (v,)) for k, v in out.items())]


class StepAssembler:
    """Collects scalars per run until their step is complete (a later step appeared, or the run went idle)."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[int, list[tuple[str, float]]]] = {}

    def add(self, run: str, step: int, tag: str, value: float) -> tuple[int, list[tuple[str, float]]] | None:
        """Add one scalar; returns the run's previous step ``(step, values)`` when this one starts a new step."""
        current = self.pending.get(run)
        if current is not None and current[0] == step:
            current[1].append((tag, value))
            return None
        self.pending[run] = (step, [(tag, value)])
        return current

    def take(self, run: str) -> tuple[int, list[tuple[str, float]]] | None:
        """The run's pending step, now considered complete."""
        return self.pending.pop(run, None)
