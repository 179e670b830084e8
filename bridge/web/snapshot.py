"""Feed copies → plain JSON-able data for the page and ``trainsound top`` (pure: no I/O, no clock).

One shape for both readers (docs/web.md): ``runs`` (each with its step, stereo position and ``rows`` —
one per OSC address or voice group, with the raw latest values as text and the voices it feeds, pitch and level as
the sine renderer plays them), ``alarms`` and ``alarm_count``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from ..config import Config, output_options
from ..mapped import Mapped
from ..mapping.deviation import Reference
from ..mapping.groups import groups_rule
from ..sound.maps import pitch_hz, run_pan
from ..wire.midi import DATA_MAX
from ..wire.protocol import VALUE_NAMES
from .feed import GROUP_KIND, GROUP_PREFIX, Alarm, FeedCopy, finite_or_none

#: The sine renderer's levels (outputs/sine_voices.py): note rules at ``gain·velocity/127``, CC rules at
#: ``cc_gain``; its defaults when the config has no ``[sine]`` table.
_SINE_DEFAULTS = {"gain": 0.5, "cc_gain": 0.15, "fmin": 110.0, "octaves": 5.0}


def sine_params(config: Config) -> dict[str, float]:
    """The ``[sine]`` numbers the page's WebAudio engine needs to sound like the bridge's renderer."""
    opts = output_options(config, "sine", None)
    if opts is None:
        return dict(_SINE_DEFAULTS)
    return {k: float(getattr(opts, k)) for k in _SINE_DEFAULTS}


#: What a person calls the built-in rules' measures (docs/web.md); other rules: :func:`readable`'s guess.
READABLE = {
    "grad_norm_notes": "gradient",
    "loss_brightness": "loss",
    "update_ratio_mod": "update ratio",
    "weight_std_resonance": "weight spread",
    "accuracy_expression": "accuracy",
    "metric_acc": "accuracy",
    "metric_val_accuracy": "validation accuracy",
    "metric_val_acc": "validation accuracy",
    "metric_learning_rate": "learning rate",
    "metric_lr": "learning rate",
    "metric_grad_norm": "gradient norm",
}
_SUFFIXES = ("_notes", "_mod", "_resonance", "_brightness", "_expression", "_cc", "_note")


def readable(rule_name: str) -> str:
    """A rule's name as a person reads it (the rule's own name stays in the row's ``rule``).

    >>> readable("grad_norm_notes"), readable("weight_std_resonance"), readable("my_loss_cc"), readable("x")
    ('gradient', 'weight spread', 'my loss', 'x')
    """
    if rule_name in READABLE:
        return READABLE[rule_name]
    name = rule_name.removeprefix("metric_")
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("_", " ")


def voice_id(m: Mapped) -> str:
    """A stable text key for a voice.

    >>> voice_id(Mapped(0.0, "r", 0, "g", "note", ("r", "fc1"), 0, 1.0, 0.5, 1, (), (), 0.0))
    '0|r/fc1'
    """
    return f"{m.rule}|{'/'.join(m.stream)}"


def voice_data(m: Mapped, config: Config, sine: dict[str, float]) -> dict[str, Any]:
    rule = config.mappings[m.rule] if 0 <= m.rule < len(config.mappings) else None
    level = sine["cc_gain"] if rule is None or rule.target != "note" else sine["gain"] * rule.velocity / DATA_MAX
    return {
        "id": voice_id(m),
        "rule": m.rule_name,
        "label": readable(m.rule_name),
        "target": m.target,
        "norm": round(m.norm, 5),
        "hz": round(pitch_hz(m.norm, sine["fmin"], sine["octaves"]), 3),
        "level": round(level, 4),
        "t": m.t,
    }


def alarm_data(a: Alarm) -> dict[str, Any]:
    return {"seq": a.seq, "t": a.t, "run": a.run, "name": a.name, "kind": a.kind, "step": a.step,
            "value": finite_or_none(a.value)}


def grouped_patterns(config: Config) -> tuple[re.Pattern[str], ...]:
    """The address patterns of the rules that gather layers into voice groups."""
    return tuple(r.pattern for r in config.mappings if groups_rule(r.voice_key, r.voices, config.groups))


@lru_cache(maxsize=1 << 14)
def _grouped_layer(address: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    return any(p.fullmatch(address) for p in patterns)


def row_data(address: str, ev: Any, voices: list[dict[str, Any]], group: Mapped | None = None,
             config: Config | None = None) -> dict[str, Any]:
    """One row: an address's latest event, or (``group``: its latest aggregate) a voice group's."""
    names = VALUE_NAMES.get(ev.kind, ())
    kind, name, rule = ev.kind, ev.name or ev.kind, None
    if group is not None:  # kind: what the grouping rule listens to; name: the rule's measure, as a person says it
        rules = config.mappings if config is not None else ()
        kind = (rules[group.rule].kind if 0 <= group.rule < len(rules) else "") or GROUP_KIND
        name, rule = readable(group.rule_name), group.rule_name
    elif voices:
        rule = voices[0]["rule"]
    return {
        "id": address,
        "kind": kind,
        "name": name,
        "rule": rule,
        # A row's group: its voice group's name (a grouped layer's rows are its groups), else its kind.
        "group": group.stream[-1] if group is not None else ev.kind,
        "value": finite_or_none(ev.values[0]) if ev.values else None,
        "values": {n: finite_or_none(v) for n, v in zip(names, ev.values, strict=False)} if len(ev.values) > 1 else {},
        "t": ev.t,
        "voices": voices,
    }


def build(copy: FeedCopy, config: Config, order: dict[str, int] | None = None) -> dict[str, Any]:
    """The feed as data. ``order`` gives each run's first-seen index (its stereo spot) when ``copy`` holds
    only part of the feed (a delta); otherwise the copy's own order is used."""
    sine = sine_params(config)
    grouped = grouped_patterns(config)
    by_address: dict[str, list[dict[str, Any]]] = {}
    for m, address in copy.voices().values():
        by_address.setdefault(address, []).append(voice_data(m, config, sine))
    runs: dict[str, dict[str, Any]] = {}
    for address, ev in copy.events.items():
        run = runs.get(ev.run)
        if run is None:
            index = order.get(ev.run, len(order)) if order is not None else len(runs)
            run = runs[ev.run] = {"run": ev.run, "pan": run_pan(index), "step": None, "epoch": None, "rows": []}
        if ev.kind == "step":
            run["step"] = int(ev.values[0])
            run["epoch"] = int(ev.values[1]) if len(ev.values) > 1 else None
            continue
        if ev.kind in ("event", "activation_spectrum"):
            continue
        voices = by_address.get(address, [])
        if ev.kind == GROUP_KIND:
            ms = copy.mapped.get(address)
            if ms:
                run["rows"].append(row_data(address, ev, voices, ms[0], config))
            continue
        if not voices and grouped and ev.finite and _grouped_layer(address, grouped):
            continue  # a grouped layer: heard, and shown, as part of its group's row (a NaN stays in view)
        run["rows"].append(row_data(address, ev, voices))
    ref = output_options(config, "reference", None)
    if ref is not None:
        add_reference(runs.values(), ref)
    return {
        "seq": copy.seq,
        "runs": list(runs.values()),
        "alarms": [alarm_data(a) for a in copy.alarms],
        "alarm_count": copy.alarm_count,
    }


def add_reference(runs: Iterable[dict[str, Any]], ref: Reference) -> None:
    """``--reference``: each row's reference value in its run's step (the page draws it dashed: docs/compare.md)."""
    for run in runs:
        step = run["step"]
        if step is None:
            continue
        prefix = f"/nn/{run['run']}/"
        for row in run["rows"]:
            rid = row["id"]
            if rid.startswith(GROUP_PREFIX):  # group:<run>/<rule>/<index>/<name>
                parts = rid[len(GROUP_PREFIX) + len(run["run"]) + 1 :].split("/", 2)
                s = ref.mapped.get((int(parts[0]), (parts[2],))) if len(parts) == 3 and parts[0].isdigit() else None
            else:
                s = ref.streams.get(rid[len(prefix) :]) if rid.startswith(prefix) else None
            i = s.at(step) if s is not None else None
            if i is not None and s is not None:
                row["reference"] = finite_or_none(s.values[i])


def fit(snap: dict[str, Any], limit: int) -> str:
    """``snap`` as JSON of at most ``limit`` bytes: fewer rows per run and fewer alarms (``truncated``)
    until it fits; ``""`` when not even one of each does."""
    text = json.dumps(snap)
    keep = 64
    while len(text) > limit and keep >= 1:
        snap["alarms"] = snap["alarms"][-keep:]
        if "incidents" in snap:
            snap["incidents"] = [{**i, "members": i["members"][:keep]} for i in snap["incidents"][-keep:]]
        for run in snap["runs"]:
            run["rows"] = run["rows"][:keep]
        snap["truncated"] = True
        text = json.dumps(snap)
        keep //= 2
    return text if len(text) <= limit else ""
