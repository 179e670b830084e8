"""``trainsound follow LOGDIR``: send the scalars of a (running or finished) training's TensorBoard logs to a bridge.

Every ``--interval`` seconds the event files are read from where the last read stopped (new files and
run folders included); a step goes out, as one bundle, when a later step of its run appears or when
its run brought nothing new in the last read. No change to the training code.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from trainsound.osc import Client, parse_addr

from .reader import Logdir
from .steps import StepAssembler, step_messages
from .tags import TagTable, parse_map

__all__ = ["Follower", "add_parser"]

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.25


class Follower:
    """One logdir → one :class:`~trainsound.osc.Client` per run."""

    def __init__(self, logdir: Logdir, table: TagTable, host: str | None = None, port: int | None = None) -> None:
        self.logdir = logdir
        self.table = table
        self.host, self.port = host, port
        self.clients: dict[str, Client] = {}
        self.steps = StepAssembler()
        self.sent = 0

    def client(self, run: str) -> Client:
        c = self.clients.get(run)
        if c is None:
            c = self.clients[run] = Client(self.host, self.port, run=run)
            c.event("start")
            c.flush()
            logger.info("run %s → %s:%d", run, c.host, c.port)
        return c

    def poll(self) -> int:
        """Read what is new and send every complete step; returns how many steps were sent."""
        sent = 0
        seen: set[str] = set()
        for s in self.logdir.poll():
            seen.add(s.run)
            done = self.steps.add(s.run, s.step, s.tag, s.value)
            if done is not None:
                sent += self._send(s.run, *done)
        for run in [r for r in self.steps.pending if r not in seen]:  # idle for one read: its step is whole
            done = self.steps.take(run)
            if done is not None:
                sent += self._send(run, *done)
        self.sent += sent
        return sent

    def _send(self, run: str, step: int, values: list[tuple[str, float]]) -> int:
        c = self.client(run)
        grads: dict[str, float] = {}
        for path, args in step_messages(step, values, self.table)[1:]:
            kind, _, name = path.partition("/")
            if kind == "loss":
                c.loss(args[0])
            elif kind == "grad_norm":
                grads[name] = float(args[0])
            else:
                c.metric(name, args[0])
        if grads:
            c.grad_norms(grads)
        c.step(step)
        return 1

    def close(self) -> None:
        for run in list(self.steps.pending):
            done = self.steps.take(run)
            if done is not None:
                self._send(run, *done)
        for c in self.clients.values():
            c.event("end")
            c.close()


def cmd_follow(args: argparse.Namespace) -> int:
    host, port = parse_addr(args.to, "--to") if args.to else (None, None)
    table = TagTable.default([parse_map(m) for m in args.map])
    follower = Follower(Logdir(args.logdir, args.run), table, host, port)
    try:
        while True:
            n = follower.poll()
            if args.once and n == 0 and not follower.steps.pending:
                break
            time.sleep(0 if args.once else args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
    print(f"follow: {follower.sent} step(s) from {len(follower.clients)} run(s) sent", file=sys.stderr)
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``trainsound follow``."""
    p = subparsers.add_parser(
        "follow", help="send a training's TensorBoard scalars to a bridge (no code change)",
        description="Tail the TensorBoard event files under LOGDIR (every folder with event files is a run) and "
        "send their scalars to a bridge in the trainsound protocol. Tags map to messages by a table "
        "(docs/clients.md); --map adds rules in front of it.")
    p.add_argument("logdir", help="the training's TensorBoard log directory")
    p.add_argument("--to", metavar="HOST:PORT", help="bridge address (default $TRAINSOUND_ADDR or 127.0.0.1:9150)")
    p.add_argument("--run", metavar="NAME", help="run name (default: the folder names)")
    p.add_argument("--map", action="append", default=[], metavar="PATTERN=TARGET",
                   help="tag rule, tried before the defaults: a regex matching the whole tag = loss, "
                   "metric/<name>, grad_norm/<name> ({name} = the (?P<name>...) group) or ignore")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="S",
                   help=f"seconds between reads (default {DEFAULT_INTERVAL})")
    p.add_argument("--once", action="store_true", help="send what is there now, then exit (a finished training)")
    p.set_defaults(func=cmd_follow)
