"""``trainsound follow LOGDIR | mlflow:URI``: send a training's logged scalars to a bridge, with no code change.

Every ``--interval`` seconds the source is read from where the last read stopped — the TensorBoard event
files under LOGDIR (new files and run folders included), or an MLflow tracking server's runs
(:mod:`.mlflow`); a step goes out, as one bundle, when a later step of its run appears or when its run
brought nothing new in the last read. All runs share one socket (:class:`.sender.StepSender`).

``--once`` sends what is there and exits, **paced on the step clock** (``--steps-per-second``, 8 by
default, as ``render``): a finished log sent at full speed reached a live bridge as a burst, and the
bridge's rate limits let 5 of 1,002 messages through.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from .reader import Logdir, Scalar
from .sender import StepSender
from .steps import StepAssembler, step_messages
from .tags import TagTable, parse_map

__all__ = ["Follower", "Source", "add_parser", "pace"]

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.25
#: An MLflow server is shared by a lab: polled less often than a local folder.
DEFAULT_MLFLOW_INTERVAL = 2.0
#: ``--once``'s pace: the step clock of ``render`` (its ``--steps-per-second``).
DEFAULT_STEPS_PER_SECOND = 8.0
MLFLOW_PREFIX = "mlflow:"

Step = tuple[str, int, list[tuple[str, float]]]


class Source(Protocol):
    """What ``follow`` reads: scalars appended since the last poll, and the runs that ended since."""

    def poll(self) -> list[Scalar]: ...

    def take_ended(self) -> list[str]: ...

    def backlog(self) -> bool:
        """Whether data known to be there is still unread (a poll reads a bounded amount)."""
        ...


class LogdirSource(Logdir):
    """A TensorBoard logdir as a :class:`Source` (its runs end when ``follow`` does)."""

    def take_ended(self) -> list[str]:
        return []

    def backlog(self) -> bool:
        return False


class Follower:
    """One source → complete steps; ``send`` (default: :meth:`StepSender.send_step` of ``sender``) gets each."""

    def __init__(self, source: Source, table: TagTable, sender: StepSender,
                 send: Callable[[Step], None] | None = None) -> None:
        self.source = source
        self.table = table
        self.sender = sender
        self.steps = StepAssembler()
        self.runs: set[str] = set()
        self.sent = 0
        self._send = send or self.send_now
        self._live = send is None  # deferred (--once): runs end when the paced steps are out, at close

    def send_now(self, step: Step) -> None:
        run, i, values = step
        self.sender.send_step(run, i, step_messages(i, values, self.table)[1:])

    def _done(self, run: str, done: tuple[int, list[tuple[str, float]]] | None) -> int:
        if done is None:
            return 0
        self.runs.add(run)
        self._send((run, *done))
        return 1

    def poll(self) -> int:
        """Read what is new and send every complete step; returns how many steps were sent."""
        sent = 0
        seen: set[str] = set()
        for s in self.source.poll():
            seen.add(s.run)
            sent += self._done(s.run, self.steps.add(s.run, s.step, s.tag, s.value))
        for run in [r for r in self.steps.pending if r not in seen]:  # idle for one read: its step is whole
            sent += self._done(run, self.steps.take(run))
        for run in self.source.take_ended():  # a finished MLflow run: its voices are released now
            sent += self._done(run, self.steps.take(run))
            if self._live:
                self.sender.end(run)
        self.sent += sent
        return sent

    def flush(self) -> None:
        """Every pending step is complete now (the source is exhausted, or following stops)."""
        for run in list(self.steps.pending):
            self.sent += self._done(run, self.steps.take(run))

    def close(self) -> None:
        self.flush()
        self.sender.close()


def pace(steps: list[Step], send: Callable[[Step], None], steps_per_second: float,
         sleep: Callable[[float], None] = time.sleep) -> None:
    """Send ``steps`` on the step clock: in step order across runs, one step index every ``1/steps_per_second`` s
    (all runs' step *k* together), as ``render`` lays them out."""
    order = sorted({i for _, i, _ in steps})
    index = {i: n for n, i in enumerate(order)}
    t0 = time.monotonic()
    for run, i, values in sorted(steps, key=lambda s: (index[s[1]], s[0])):
        due = t0 + index[i] / steps_per_second
        wait = due - time.monotonic()
        if wait > 0:
            sleep(wait)
        send((run, i, values))


def make_source(args: argparse.Namespace) -> Source:
    if args.logdir.startswith(MLFLOW_PREFIX):
        from .mlflow import MlflowSource

        return MlflowSource(args.logdir[len(MLFLOW_PREFIX):], experiment=args.experiment, run=args.run,
                            include_finished=args.once)
    if args.experiment is not None:
        from ..errors import ConfigError

        raise ConfigError(f"--experiment is for mlflow:URI sources, not a logdir ({args.logdir})")
    return LogdirSource(args.logdir, args.run, wait=not args.once)


def cmd_follow(args: argparse.Namespace) -> int:
    table = TagTable.default([parse_map(m) for m in args.map])
    source = make_source(args)
    sender = StepSender(args.to)
    mlflow = args.logdir.startswith(MLFLOW_PREFIX)
    interval = args.interval if args.interval is not None else DEFAULT_MLFLOW_INTERVAL if mlflow else DEFAULT_INTERVAL
    if args.once:
        collected: list[Step] = []
        follower = Follower(source, table, sender, send=collected.append)
    else:
        follower = Follower(source, table, sender)
    try:
        if args.once:
            while follower.poll() or source.backlog():
                pass
            follower.flush()
            n = len({i for _, i, _ in collected})
            if n:
                logger.info("sending %d step(s) at %g steps/s: ~%.0f s (trainsound render renders a log offline)",
                            n, args.steps_per_second, n / args.steps_per_second)
            pace(collected, follower.send_now, args.steps_per_second)
        else:
            while True:
                follower.poll()
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
    print(f"follow: {follower.sent} step(s) from {len(follower.runs)} run(s) sent", file=sys.stderr)
    return 0


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def add_parser(subparsers: Any) -> None:
    """Register ``trainsound follow``."""
    p = subparsers.add_parser(
        "follow", help="send a training's TensorBoard or MLflow scalars to a bridge (no code change)",
        description="Tail the TensorBoard event files under LOGDIR (every folder with event files is a run; a LOGDIR "
        "that does not exist yet is waited for), or the runs of an MLflow tracking server (mlflow:URI, e.g. "
        "mlflow:http://host:5000), and send their scalars to a bridge in the trainsound protocol. Tags map to "
        "messages by a table (docs/clients.md); --map adds rules in front of it.")
    p.add_argument("logdir", metavar="LOGDIR|mlflow:URI",
                   help="the training's TensorBoard log directory, or mlflow:<tracking URI>")
    p.add_argument("--to", metavar="HOST:PORT", help="bridge address (default $TRAINSOUND_ADDR or 127.0.0.1:9150)")
    p.add_argument("--run", metavar="NAME|ID",
                   help="LOGDIR: run name for event files directly in it (default: the folder names); "
                   "mlflow: follow only this run (its name or ID), finished or not")
    p.add_argument("--experiment", metavar="NAME", help="mlflow: only this experiment's runs (default: all)")
    p.add_argument("--map", action="append", default=[], metavar="PATTERN=TARGET",
                   help="tag rule, tried before the defaults: a regex matching the whole tag = loss, "
                   "metric/<name>, grad_norm/<name> ({name} = the (?P<name>...) group) or ignore")
    p.add_argument("--interval", type=_positive, metavar="S",
                   help=f"seconds between reads (default {DEFAULT_INTERVAL}; mlflow: {DEFAULT_MLFLOW_INTERVAL})")
    p.add_argument("--once", action="store_true",
                   help="send what is there now, paced on the step clock, then exit (a finished training)")
    p.add_argument("--steps-per-second", type=_positive, default=DEFAULT_STEPS_PER_SECOND, metavar="N",
                   help=f"--once's pace (default {DEFAULT_STEPS_PER_SECOND:g}, as render's step clock)")
    p.set_defaults(func=cmd_follow)
