"""The alarm options: ``[alarms]`` (the fault detectors: each kind's note, hold-off, window and
thresholds; the context ticks) and ``[alarm]`` (how an alarm sounds on MIDI: channel, note, velocity,
CC, length, the NaN hold-off and the global rate). Both validated once; errors name the key.
docs/alarms.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..table import Table
from ..wire.midi import DATA_MAX

ALARM_KINDS = ("spike", "plateau", "divergence", "exploding", "vanishing", "dead", "nan")
#: MIDI notes on the alarm channel, one per kind (``nan`` is ``[alarm].note``); docs/alarms.md.
DEFAULT_NOTES = {"nan": 90, "spike": 91, "plateau": 92, "divergence": 93, "exploding": 94, "vanishing": 95,
                 "dead": 96, "epoch": 84, "lr": 85}
DEFAULT_HOLD_OFF = 500
DEFAULT_RECENT = 50
DEFAULT_LR_CHANGE = 0.1

@dataclass(frozen=True)
class KindOptions:
    """One kind's settings; the thresholds that do not apply to a kind are left at their defaults."""

    enabled: bool = True
    note: int = 0
    hold_off: int = DEFAULT_HOLD_OFF
    window: int = 0
    threshold: float = 0.0
    """spike: robust z; plateau: relative change; divergence: rise factor; exploding: factor;
    vanishing: fraction of the median; dead: rounds of all-zero gradients."""
    ratio: float = 0.0
    """spike: minimum ratio to the median; vanishing: absolute floor."""


#: kind → (window, threshold, ratio, (threshold range), name of threshold, name of ratio)
_KIND_DEFAULTS: dict[str, tuple[int, float, float, tuple[float, float], str, str]] = {
    "spike": (50, 4.0, 2.0, (1.0, 1000.0), "z", "min_ratio"),
    "plateau": (300, 0.01, 0.0, (1e-6, 0.99), "min_change", ""),
    "divergence": (50, 1.5, 0.0, (1.01, 1e6), "rise", ""),
    # A grad norm's reference is its recent level (16 values): early in training a layer's norm grows 80× in
    # 75 steps as it leaves its initial plateau (a CNN's conv1, measured), which a 50-value median calls exploding.
    "exploding": (16, 20.0, 0.0, (1.5, 1e12), "factor", ""),
    "vanishing": (16, 1e-3, 1e-12, (1e-15, 0.9), "fraction", "floor"),
    "dead": (0, 3.0, 0.0, (1.0, 1e6), "rounds", ""),
    "nan": (0, 0.0, 0.0, (0.0, 0.0), "", ""),
}


def kind_defaults(kind: str) -> KindOptions:
    w, th, r, _, _, _ = _KIND_DEFAULTS[kind]
    return KindOptions(note=DEFAULT_NOTES[kind], window=w, threshold=th, ratio=r)


@dataclass(frozen=True)
class AlarmsOptions:
    enabled: bool = True
    speak: bool = False
    """Say the alarm after its earcon (espeak-ng), live and in renders."""
    recent: int = DEFAULT_RECENT
    kinds: dict[str, KindOptions] = field(default_factory=lambda: {k: kind_defaults(k) for k in ALARM_KINDS})
    ticks: bool = True
    tick_notes: tuple[int, int] = (DEFAULT_NOTES["epoch"], DEFAULT_NOTES["lr"])
    lr_change: float = DEFAULT_LR_CHANGE


def section(t: Table, nan_note: int = DEFAULT_NOTES["nan"]) -> AlarmsOptions:
    """Validate the ``[alarms]`` table (keys and ranges in docs/alarms.md); errors name the key."""
    kinds: dict[str, KindOptions] = {}
    for kind in ALARM_KINDS:
        k = Table(t.raw(kind, {}), t.key(kind))
        w, th, r, (lo, hi), th_name, r_name = _KIND_DEFAULTS[kind]
        kinds[kind] = KindOptions(
            enabled=k.boolean("enabled", True),
            note=k.integer("note", nan_note if kind == "nan" else DEFAULT_NOTES[kind], 0, 127),
            hold_off=k.integer("hold_off", DEFAULT_HOLD_OFF, 0, 10**9),
            window=k.integer("window", w, 5, 10**6) if w else 0,
            threshold=k.number(th_name, th, lo, hi) if th_name else 0.0,
            ratio=(k.number(r_name, r, 1.0, 1e6) if kind == "spike" else k.number(r_name, r, 0.0, 1.0))
            if r_name else 0.0,
        )
        k.finish()
    tk = Table(t.raw("ticks", {}), t.key("ticks"))
    opts = AlarmsOptions(
        enabled=t.boolean("enabled", True),
        speak=t.boolean("speak", False),
        recent=t.integer("recent", DEFAULT_RECENT, 1, 10_000),
        kinds=kinds,
        ticks=tk.boolean("enabled", True),
        tick_notes=(tk.integer("epoch_note", DEFAULT_NOTES["epoch"], 0, 127),
                    tk.integer("lr_note", DEFAULT_NOTES["lr"], 0, 127)),
        lr_change=tk.number("lr_change", DEFAULT_LR_CHANGE, 1e-6, 1e6),
    )
    tk.finish()
    unknown = sorted(set(t.data) - t.used)
    if unknown and isinstance(t.data[unknown[0]], dict):
        raise ConfigError(f"{t.key(unknown[0])}: unknown alarm kind {unknown[0]!r} "
                          f"(kinds: {', '.join(ALARM_KINDS)}, and ticks)")
    t.finish()
    return opts


@dataclass(frozen=True)
class AlarmOptions:
    """``[alarm]``: how an alarm sounds on MIDI (the detectors' options are :class:`AlarmsOptions`)."""

    channel: int = 16
    note: int = 90
    velocity: int = DATA_MAX
    cc: int = 20
    cc_value: int = DATA_MAX
    length: float = 0.4
    min_interval: float = 0.5
    max_per_second: float = 10.0
    """Alarms sounded per second over all addresses (distinct addresses do not multiply it); 0: no limit."""


def alarm_section(a: Table) -> AlarmOptions:
    """Validate the ``[alarm]`` table; errors name the key."""
    d = AlarmOptions()  # the defaults live in one place: the dataclass
    alarm = AlarmOptions(
        channel=a.integer("channel", d.channel, 1, 16),
        note=a.integer("note", d.note, 0, DATA_MAX),
        velocity=a.integer("velocity", d.velocity, 1, DATA_MAX),
        cc=a.integer("cc", d.cc, 0, DATA_MAX),
        cc_value=a.integer("cc_value", d.cc_value, 0, DATA_MAX),
        length=a.number("length_ms", d.length * 1000.0, 1.0, 60_000.0) / 1000.0,
        min_interval=a.number("min_interval_ms", d.min_interval * 1000.0, 0.0, 60_000.0) / 1000.0,
        max_per_second=a.number("max_per_second", d.max_per_second, 0.0, 10_000.0),
    )
    a.finish()
    return alarm
