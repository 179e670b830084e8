"""The fault benchmark's tables (Markdown, so they paste into docs/alarms.md as printed).

Each table starts with a ``### `` title line; each row is ``| cell | … |``. :func:`parse_tables` reads them
back (the bench's test does).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from _fault_eval import RULES, WINDOW, Incident, Score
from _faultrig import EXPECTED, FRAMEWORKS

RULE_TITLES = {"lightning": "Lightning spike", "megatron": "Megatron 10x", "zclip": "ZClip z>2.5",
               "mosaic": "Mosaic 25/500"}
SHOW = 4


def table(title: str, head: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |")


def parse_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Title → rows (header → cell) of every table :func:`table` printed in ``text``."""
    out: dict[str, list[dict[str, str]]] = {}
    title, head = None, None
    for line in text.splitlines():
        if line.startswith("### "):
            title, head = line[4:].strip(), None
            out[title] = []
        elif title is not None and line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if head is None:
                head = cells
            else:
                out[title].append(dict(zip(head, cells, strict=True)))
    return out


def _x(r: float) -> str:
    return "-" if math.isnan(r) else "inf" if math.isinf(r) else f"{r:.3g}x"


def _inc(i: Incident, at: int | None) -> str:
    where = f"{i.step - at:+d}" if at is not None else f"@{i.step}"
    more = f" ({len(i.members)})" if len(i.members) > 1 else ""
    return f"{i.kind}{where} {i.name}{more}".strip()


def _incs(incs: Sequence[Incident], at: int | None) -> str:
    shown = "; ".join(_inc(i, at) for i in incs[:SHOW])
    return (shown + (f"; +{len(incs) - SHOW} more" if len(incs) > SHOW else "")) or "none"


def _rule(s: Score, rule: str) -> str:
    off = s.rule_found(rule)
    early = s.rule_false(rule)
    return ("miss" if off is None else f"{off:+d}") + (f" ({early} early)" if early else "")


def fault_rows(scores: Sequence[Score]) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in scores:
        if s.error is not None:
            rows.append([s.framework, s.fault, "-", f"ERROR {s.error[:80]}", "-", "-", "-", "-", "-",
                         *("-" for _ in RULES)])
            continue
        after = [i for i in s.incidents if i.step >= (s.at or 0) - WINDOW]
        m = s.first_match()
        loss_x, grad_x = s.jump or (math.nan, math.nan)
        lead = s.lead()
        rows.append([
            s.framework, s.fault, f"{_x(loss_x)} / {_x(grad_x)}", _incs(after, s.at),
            "HIT" if s.hit() else "miss", "-" if m is None else f"{m.step - (s.at or 0):+d}",
            len(s.near()), len(s.false()), "-" if lead is None else lead, *(_rule(s, r) for r in RULES),
        ])
    return rows


def healthy_rows(scores: Sequence[Score]) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in scores:
        sched, seed = s.key.split("-")[3], s.key.split("-")[2].lstrip("s")
        if s.error is not None:
            rows.append([s.framework, sched, seed, f"ERROR {s.error[:80]}", *("-" for _ in RULES)])
            continue
        rows.append([s.framework, sched, seed, f"{len(s.incidents)}: {_incs(s.incidents, None)}",
                     *(s.rule_false(r) for r in RULES)])
    return rows


def summary_rows(faulty: Sequence[Score], healthy: Sequence[Score]) -> list[list[object]]:
    rows: list[list[object]] = []
    groups = [fw for fw in FRAMEWORKS if any(s.framework == fw for s in (*faulty, *healthy))]
    for fw in [*groups, "all"]:
        f = [s for s in faulty if s.error is None and fw in ("all", s.framework)]
        h = [s for s in healthy if s.error is None and fw in ("all", s.framework)]
        failed = sum(1 for s in (*faulty, *healthy) if s.error is not None and fw in ("all", s.framework))
        named_any = sum(1 for s in f if s.first_match() is not None)
        row: list[object] = [fw, f"{sum(s.hit() for s in f)}/{len(f)}", f"{named_any}/{len(f)}",
                             sum(len(s.false()) for s in f), f"{sum(not s.incidents for s in h)}/{len(h)}",
                             sum(len(s.incidents) for s in h), failed]
        for r in RULES:
            found = [s for s in f if s.rule_found(r) is not None]
            beyond = sum(1 for s in found if not s.named_near())
            row.append(f"{len(found)}/{len(f)} found, {sum(s.rule_false(r) for s in h)} false, {beyond} ts missed")
        rows.append(row)
    return rows


def print_tables(scores: Sequence[Score]) -> None:
    faulty = [s for s in scores if s.at is not None]
    healthy = [s for s in scores if s.at is None]
    rules = [RULE_TITLES[r] for r in RULES]
    expected = "; ".join(f"{f} -> {'/'.join(sorted(k))}" for f, k in EXPECTED.items())
    print(f"\nexpected kinds: {expected}")
    print(f"offsets are steps from the fault's step; a hit is an expected kind within +-{WINDOW} steps as the one "
          "incident there (a frozen block's incident must name the block)")
    table("Faults", ["framework", "fault", "loss / grad jump", f"trainsound incidents from -{WINDOW}", "named",
                     "offset", f"in +-{WINDOW}", "false before", "lead", *rules], fault_rows(faulty))
    table("Healthy runs", ["framework", "schedule", "seed", "trainsound incidents", *rules], healthy_rows(healthy))
    table("Summary", ["framework", "named right (one, +-5)", "expected kind any time", "false before fault",
                      "healthy silent", "healthy incidents", "runs failed", *rules], summary_rows(faulty, healthy))
