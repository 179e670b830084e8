"""A TensorBoard logdir as a session recording, so ``trainsound render LOGDIR`` renders it like a recording.

Steps are laid on an even clock, :data:`STEP_SECONDS` apart, in step order across all runs (a
run's wall-clock time would make hours of audio of a long training, and silence between runs).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..wire.osc import encode_message
from ..wire.session import SessionWriter
from .reader import Logdir, Scalar
from .steps import StepAssembler, step_messages
from .tags import TagTable

__all__ = ["STEP_SECONDS", "logdir_session", "mlflow_session", "write_scalars", "write_session"]

#: Seconds of rendered audio per logged step.
STEP_SECONDS = 0.1
_T0 = 1.0


def write_session(logdir: str | Path, out: Path, table: TagTable | None = None, run: str | None = None) -> int:
    """Write every step of ``logdir`` into the session file ``out``; returns the number of messages."""
    return write_scalars(Logdir(logdir, run).poll(), out, table, source=str(logdir))


def write_scalars(scalars: Iterable[Scalar], out: Path, table: TagTable | None = None, source: str = "") -> int:
    """Write the steps of ``scalars`` (each run's in step order) into the session file ``out``."""
    table = table or TagTable.default()
    steps: list[tuple[int, str, list[tuple[str, float]]]] = []
    asm = StepAssembler()
    for s in scalars:
        done = asm.add(s.run, s.step, s.tag, s.value)
        if done is not None:
            steps.append((done[0], s.run, done[1]))
    for r in list(asm.pending):
        done = asm.take(r)
        if done is not None:
            steps.append((done[0], r, done[1]))
    order = {step: i for i, step in enumerate(sorted({s for s, _, _ in steps}))}
    n = 0
    with out.open("wb") as fh:
        w = SessionWriter(fh, start=_T0, meta={"source": source})
        for run in dict.fromkeys(r for _, r, _ in steps):
            w.write(_T0, encode_message(f"/nn/{run}/event", ["start"]))
            n += 1
        for step, run, values in sorted(steps, key=lambda x: (order[x[0]], x[1])):
            t = _T0 + STEP_SECONDS * (1 + order[step])
            for path, args in step_messages(step, values, table):
                w.write(t, encode_message(f"/nn/{run}/{path}", list(args)))
                n += 1
        w.flush()
    return n


@contextlib.contextmanager
def logdir_session(logdir: str | Path) -> Iterator[Path]:
    """A temporary session file holding ``logdir``'s steps (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="trainsound-tb-") as tmp:
        path = Path(tmp) / "logdir.tsr"
        write_session(logdir, path)
        yield path


@contextlib.contextmanager
def mlflow_session(uri: str, run: str | None, experiment: str | None) -> Iterator[Path]:
    """A temporary session file holding the steps of an MLflow run (``run``) or of an experiment's runs."""
    from ..errors import ConfigError
    from .mlflow import MlflowSource, MlflowSourceError

    if run is None and experiment is None:
        raise ConfigError(f"render mlflow:{uri} needs --run NAME|ID (or --experiment NAME: all its runs)")
    source = MlflowSource(uri, run=run, experiment=experiment, include_finished=True)
    scalars: list[Scalar] = []
    while True:
        scalars.extend(source.poll())
        if not source.backlog():
            break
    if source.down:
        raise MlflowSourceError(f"mlflow: {uri} does not answer")
    with tempfile.TemporaryDirectory(prefix="trainsound-mlflow-") as tmp:
        path = Path(tmp) / "mlflow.tsr"
        write_scalars(scalars, path, source=f"mlflow:{uri}")
        yield path
