"""``trainsound compare A.tsr B.tsr``: where two recorded runs part (docs/compare.md).

Both runs go through the same mapping (:func:`.reference.load`, on a step grid slow enough that no rate
limit thins a step); per stream (the address after ``/nn/<run>/``) and per voice group, the steps both have
are compared: the first step whose :func:`~..mapping.deviation.deviation` exceeds the tolerance, and the
largest deviation, in decades (signed: positive when A is the larger). Text, or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..config import Config
from ..config import default as default_config
from ..config import load as load_config
from ..errors import ConfigError
from ..mapping.deviation import DEFAULT_TOLERANCE, Reference, Series, deviation
from .reference import load

#: The step grid both runs are mapped on: 10 steps/s (100 ms a step), slower than every default rate limit.
COMPARE_STEPS_PER_SECOND = 10.0


def compare_series(a: Series, b: Series, tolerance: float) -> dict[str, Any]:
    """First step beyond ``tolerance`` and the largest deviation over the steps both series hold.

    >>> r = compare_series(Series([0, 1, 2], [1.0, 1.0, 10.0]), Series([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0]), 1e-3)
    >>> r["first_step"], r["max_deviation"], r["max_step"], r["steps"]
    (2, 1.0, 2, 3)
    """
    theirs = dict(zip(b.steps, b.values, strict=True))
    first: int | None = None
    worst, worst_step, n = 0.0, None, 0
    for step, x in zip(a.steps, a.values, strict=True):
        y = theirs.get(step)
        if y is None:
            continue
        n += 1
        d = 0.0 if (x != x and y != y) else deviation(x, y)
        if d != d:  # one side not finite: they differ, by no number of decades
            d = math.inf if x != y else 0.0
        if first is None and abs(d) > tolerance:
            first = step
        if abs(d) > abs(worst) and math.isfinite(d):
            worst, worst_step = d, step
        elif worst_step is None and math.isinf(d):
            worst_step = step
    return {"first_step": first, "max_deviation": worst, "max_step": worst_step, "steps": n}


def compare(a: Reference, b: Reference, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Every stream and voice group the two runs share, compared (:func:`compare_series`)."""
    lo, hi = max(a.first_step, b.first_step), min(a.last_step, b.last_step)
    if lo > hi:
        raise ConfigError(f"{b.path}: steps {b.first_step}–{b.last_step} do not overlap {a.path}'s "
                          f"{a.first_step}–{a.last_step}")
    rows: list[dict[str, Any]] = []
    for name, s in a.streams.items():
        if name in b.streams:
            rows.append({"name": name, "kind": "stream", **compare_series(s, b.streams[name], tolerance)})
    for key in a.mapped:  # in the order the run first sounded them
        if key in a.groups and key in b.groups:
            rows.append({"name": a.labels[key], "kind": "group",
                         **compare_series(a.mapped[key], b.mapped[key], tolerance)})
    if not rows:
        raise ConfigError(f"{b.path}: no stream in common with {a.path} (run {a.run!r} against run {b.run!r})")
    return {
        "a": {"path": a.path, "run": a.run, "steps": [a.first_step, a.last_step]},
        "b": {"path": b.path, "run": b.run, "steps": [b.first_step, b.last_step]},
        "steps": [lo, hi],
        "tolerance": tolerance,
        "streams": rows,
        "only_a": [n for n in a.streams if n not in b.streams] + [a.labels[k] for k in a.mapped
                                                                  if k in a.groups and k not in b.groups],
        "only_b": [n for n in b.streams if n not in a.streams] + [b.labels[k] for k in b.mapped
                                                                  if k in b.groups and k not in a.groups],
    }


def text(result: dict[str, Any]) -> str:
    """The comparison as a table, one line per stream and group."""
    a, b = result["a"], result["b"]
    lines = [f"{a['path']} (run {a['run']}) against {b['path']} (run {b['run']}): steps "
             f"{result['steps'][0]}–{result['steps'][1]} in common, tolerance {result['tolerance']:g} decades"]
    names = [("group " if r["kind"] == "group" else "") + r["name"] for r in result["streams"]]
    width = max(map(len, names)) + 2
    lines.append(f"{'stream':<{width}}{'parts at step':>14}  largest deviation (decades)")
    for name, r in zip(names, result["streams"], strict=True):
        first = "—" if r["first_step"] is None else str(r["first_step"])
        d = r["max_deviation"]
        worst = "0 (they agree)" if r["max_step"] is None else (
            f"{d:+.4g} at step {r['max_step']}" if d else f"not finite at step {r['max_step']}")
        lines.append(f"{name:<{width}}{first:>14}  {worst}")
    for side, key in (("a", "only_a"), ("b", "only_b")):
        if result[key]:
            lines.append(f"only in {result[side]['path']}: {', '.join(result[key])}")
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    if not args.tolerance >= 0 or not math.isfinite(args.tolerance):
        raise ConfigError(f"--tolerance must be a number of decades ≥ 0, got {args.tolerance}")
    cfg: Config = load_config(args.config) if args.config else default_config()
    ra = load(args.a, cfg, args.run, steps_per_second=COMPARE_STEPS_PER_SECOND, flag="--run", grid=True)
    rb = load(args.b, cfg, args.reference_run, steps_per_second=COMPARE_STEPS_PER_SECOND, grid=True)
    result = compare(ra, rb, args.tolerance)
    if args.json:
        json.dump(result, sys.stdout, indent=1, default=lambda x: None)
        sys.stdout.write("\n")
    else:
        print(text(result))
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``trainsound compare``."""
    p = subparsers.add_parser(
        "compare", help="where two recorded runs part: per stream and group, the first step beyond a tolerance",
        description="Compare run A with run B (the reference), step by step, stream by stream (docs/compare.md).")
    p.add_argument("a", metavar="A.tsr", type=Path, help="the run (a recording made with 'trainsound bridge --record')")
    p.add_argument("b", metavar="B.tsr", type=Path, help="the reference recording")
    p.add_argument("--run", metavar="NAME", help="A's run, when A holds several")
    p.add_argument("--reference-run", metavar="NAME", help="B's run, when B holds several")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="DECADES",
                   help=f"values closer than this agree (default {DEFAULT_TOLERANCE:g} decades: 0.23 %%)")
    p.add_argument("--config", metavar="FILE", help="TOML config whose mapping forms the voice groups")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=cmd_compare)
