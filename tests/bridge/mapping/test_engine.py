"""The mapping engine: pure rules from events to normalised values and MIDI bytes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from trainsound.bridge.config import Config, Rule, default, from_dict
from trainsound.bridge.mapping.autorange import AutoRange
from trainsound.bridge.mapping.engine import Engine
from trainsound.bridge.mapping.groups import GroupOptions
from trainsound.bridge.mapping.rules import compile_pattern
from trainsound.bridge.mapping.scales import SCALES
from trainsound.bridge.wire import midi as mb
from trainsound.bridge.wire.protocol import Event, parse_event


def ev(address: str, *args: object, t: float = 0.0) -> Event:
    return parse_event(address, tuple(args), t, b"")  # type: ignore[arg-type]


def ungrouped() -> Config:
    """The default config with ``[groups] mode = "none"``: one voice per layer, as these tests specify."""
    return replace(default(), groups=GroupOptions(mode="none"))


def engine(*rules: Rule, **alarm: object) -> Engine:
    """An engine with these rules; the fault detectors are off (tests/bridge/alarms/test_alarms.py has them)
    except NaN."""
    base = ungrouped()
    kinds = {k: replace(o, enabled=k == "nan") for k, o in base.alarms.kinds.items()}
    return Engine(replace(base, mappings=rules, alarm=replace(base.alarm, **alarm),  # type: ignore[arg-type]
                          alarms=replace(base.alarms, kinds=kinds, ticks=False)))


GRAD = Rule(match="/nn/{run}/grad_norm/{layer}", target="note", scale="log", range=(1e-4, 1e2), notes=(36, 96))


def test_default_grad_norms_higher_norm_higher_pitch() -> None:
    eng = Engine(ungrouped())
    pitches = []
    for i, x in enumerate([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]):
        [m] = eng.map(ev("/nn/r/grad_norm/fc1", x, t=i))
        assert m.midi[0][0] == mb.NOTE_ON  # channel 1
        pitches.append(m.midi[0][1])
        assert m.later == (mb.note_off(1, m.midi[0][1]),)
    assert pitches == sorted(pitches) and pitches[0] == 36 and pitches[-1] == 96
    assert len(set(pitches)) == 7


def test_one_voice_per_layer_and_run_in_first_seen_order() -> None:
    eng = Engine(ungrouped())
    seen = []
    for t, (run, layer) in enumerate([("a", "conv1"), ("a", "fc1"), ("b", "conv1"), ("a", "conv1"), ("a", "fc1")]):
        [m] = eng.map(ev(f"/nn/{run}/grad_norm/{layer}", 1.0, t=t))
        seen.append((m.stream, m.voice, m.channel))
    assert seen == [
        (("a", "conv1"), 0, 1),
        (("a", "fc1"), 1, 2),
        (("b", "conv1"), 2, 3),
        (("a", "conv1"), 0, 1),
        (("a", "fc1"), 1, 2),
    ]


def test_channels_skip_drums_and_alarm() -> None:
    eng = engine(GRAD)
    chans = [eng.map(ev(f"/nn/r/grad_norm/l{i}", 1.0, t=i))[0].channel for i in range(16)]
    assert mb.DRUM_CHANNEL not in chans and 16 not in chans
    assert chans[:9] == list(range(1, 10)) and chans[9] == 11 and chans[14] == 1  # 14 free channels, then wrap


def test_weight_ccs_share_the_layers_voice() -> None:
    eng = Engine(ungrouped())
    [note] = eng.map(ev("/nn/r/grad_norm/conv1", 1.0))
    [note2] = eng.map(ev("/nn/r/grad_norm/fc1", 1.0))
    mapped = eng.map(ev("/nn/r/weight/fc1", 0.0, 0.1, 0.5, 3.0, 1e-3))
    assert {m.channel for m in mapped} == {note2.channel} != {note.channel}
    assert sorted(m.midi[0][1] for m in mapped) == [1, 71]


def test_band_mode_gives_each_voice_its_own_range() -> None:
    eng = engine(replace(GRAD, voices="band", band_width=12, notes=(36, 83), musical_scale="chromatic"))
    for t, layer in enumerate(["a", "b", "c", "d", "e"]):
        for x in (1e-4, 1e2):
            [m] = eng.map(ev(f"/nn/r/grad_norm/{layer}", x, t=2 * t + x))
            lo = 36 + (t % 4) * 12
            assert lo <= m.midi[0][1] <= lo + 11
            assert m.channel == 1


@pytest.mark.parametrize("scale", ["chromatic", "major", "minor", "pentatonic", "minor_pentatonic"])
def test_quantised_to_scale_within_range(scale: str) -> None:
    eng = engine(replace(GRAD, musical_scale=scale, root=2, notes=(50, 70)))
    for i, x in enumerate(np.logspace(-5, 3, 60)):
        [m] = eng.map(ev("/nn/r/grad_norm/a", float(x), t=i))
        p = m.midi[0][1]
        assert 50 <= p <= 70 and (p - 2) % 12 in SCALES[scale]


def test_linear_clamp_invert() -> None:
    rule = Rule(match="/nn/{run}/metric/acc", target="cc", cc=11, scale="linear", range=(0.0, 1.0))
    eng = engine(rule)
    out = [eng.map(ev("/nn/r/metric/acc", x, t=i)) for i, x in enumerate([0.0, 0.5, 1.0, 2.0, -1.0])]
    # 2.0 clamps to 127, unchanged after 1.0, so not resent; -1.0 clamps to 0
    assert [[m.midi[0][2] for m in o] for o in out] == [[0], [64], [127], [], [0]]
    inv = engine(replace(rule, invert=True))
    assert inv.map(ev("/nn/r/metric/acc", 0.25))[0].midi[0][2] == 95


def test_unclamped_values_can_leave_the_unit_range_but_midi_cannot() -> None:
    eng = engine(Rule(match="/nn/{run}/loss", target="cc", scale="linear", range=(0, 1), clamp=False))
    [m] = eng.map(ev("/nn/r/loss", 3.0))
    assert m.norm == 3.0 and m.midi[0][2] == 127


def test_auto_range_uses_the_whole_range_for_norms_spanning_decades() -> None:
    eng = engine(Rule(match="/nn/{run}/loss", target="cc", scale="auto"))
    xs = np.logspace(-4, 2, 400)
    rng = np.random.default_rng(0)
    rng.shuffle(xs)
    codes = []
    for i, x in enumerate(xs):
        out = eng.map(ev("/nn/r/loss", float(x), t=i))
        codes.extend(m.midi[0][2] for m in out)
    late = codes[-100:]
    assert min(late) <= 5 and max(late) >= 122  # whole 7-bit range in use
    assert len(set(codes)) > 100


def test_auto_range_linear_fallback_for_non_positive_values() -> None:
    a = AutoRange()
    for x in (1.0, 2.0, 3.0):
        a.norm(x)
    assert not math.isnan(a.norm(-1.0)) and a.log is False


def test_smoothing_moves_gradually() -> None:
    eng = engine(Rule(match="/nn/{run}/loss", target="cc", scale="linear", range=(0, 1), smooth=0.5))
    norms = [eng.map(ev("/nn/r/loss", x, t=i))[0].norm for i, x in enumerate([0.0, 1.0, 1.0])]
    assert norms == [0.0, 0.5, 0.75]


def test_rate_limit_holds_the_newest_value_and_releases_it() -> None:
    eng = engine(Rule(match="/nn/{run}/loss", target="cc", scale="linear", range=(0, 1), rate_limit=10))
    assert len(eng.map(ev("/nn/r/loss", 0.1, t=0.0))) == 1
    assert eng.map(ev("/nn/r/loss", 0.2, t=0.01)) == []
    assert eng.map(ev("/nn/r/loss", 0.3, t=0.02)) == []
    assert eng.flush_due(0.05) == []
    [m] = eng.flush_due(0.11)
    assert m.midi[0][2] == round(0.3 * 127) and m.t == 0.11
    assert eng.flush_due(1.0) == []
    assert eng.counters.thinned == 1


def test_rate_limit_thins_notes() -> None:
    eng = engine(replace(GRAD, rate_limit=10))
    out = [eng.map(ev("/nn/r/grad_norm/a", 1.0, t=i * 0.01)) for i in range(30)]
    assert sum(len(o) for o in out) == 3
    assert eng.counters.thinned == 27


def test_no_resend_of_unchanged_value() -> None:
    eng = engine(Rule(match="/nn/{run}/loss", target="cc", scale="linear", range=(0, 1)))
    sent = [len(eng.map(ev("/nn/r/loss", 0.5, t=i))) for i in range(5)]
    assert sent == [1, 0, 0, 0, 0] and eng.counters.unchanged == 4


def test_fourteen_bit_cc_pitchbend_pressure() -> None:
    lin = {"scale": "linear", "range": (0.0, 1.0)}
    eng = engine(
        Rule(match="/nn/{run}/metric/a", target="cc14", cc=1, **lin),  # type: ignore[arg-type]
        Rule(match="/nn/{run}/metric/b", target="pitchbend", **lin),  # type: ignore[arg-type]
        Rule(match="/nn/{run}/metric/c", target="pressure", **lin),  # type: ignore[arg-type]
    )
    [a] = eng.map(ev("/nn/r/metric/a", 0.5))
    assert a.midi == (mb.control_change(1, 1, 8192 >> 7), mb.control_change(1, 33, 8192 & 0x7F))
    [b] = eng.map(ev("/nn/r/metric/b", 1.0))
    assert b.midi == (bytes((0xE0, 0x7F, 0x7F)),)
    [c] = eng.map(ev("/nn/r/metric/c", 0.0))
    assert c.midi == (bytes((0xD0, 0)),)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_fires_the_alarm_and_never_reaches_value_bytes(bad: float) -> None:
    eng = Engine(ungrouped())
    eng.map(ev("/nn/r/grad_norm/fc1", 1.0, t=0))
    out = eng.map(ev("/nn/r/grad_norm/fc1", bad, t=1))
    [m] = out
    assert m.alarm and m.target == "alarm" and m.channel == 16
    assert m.midi == (mb.note_on(16, 90, 127), mb.control_change(16, 20, 127))
    assert m.later == (mb.note_off(16, 90), mb.control_change(16, 20, 0))
    assert eng.counters.nonfinite == 1 and eng.counters.alarms == 1


def test_a_lasting_nan_is_one_incident_until_the_values_are_finite_again() -> None:
    eng = Engine(ungrouped())
    outs = [eng.map(ev("/nn/r/loss", math.nan, t=i * 0.1)) for i in range(10)]
    loud = [o for o in outs if o and o[0].midi]
    assert len(loud) == 1 and all(o[0].kind == "nan" for o in outs)  # every value mutes its voice; one sounds
    assert eng.counters.nonfinite == 10
    eng.map(ev("/nn/r/loss", 1.0, t=1.0))  # finite again: the incident is over
    eng.map(ev("/nn/r/step", 10, t=1.05))
    assert eng.map(ev("/nn/r/loss", math.nan, t=1.1))[0].midi  # …and the next NaN, more than 5 steps on, is new
    assert [i["streams"] for i in eng.watch.status()["recent"]] == [1, 1]


def test_nan_in_one_weight_stat_alarms_once() -> None:
    eng = Engine(ungrouped())
    out = eng.map(ev("/nn/r/weight/fc1", math.nan, 0.1, 0.5, 3.0, 1e-3))
    assert sum(1 for m in out if m.midi and m.alarm) == 1


def test_nan_event_alarms_for_the_run() -> None:
    eng = Engine(ungrouped())
    [m] = eng.map(ev("/nn/r/event", "nan"))
    assert m.alarm and m.stream == ("r",) and m.midi


def test_events_without_a_rule_are_counted_unmapped() -> None:
    eng = Engine(ungrouped())
    assert eng.map(ev("/nn/r/step", 3)) == []
    assert eng.counters.unmapped == 1


def test_voice_limit() -> None:
    eng = Engine(replace(ungrouped(), mappings=(GRAD,)), max_voices=3)
    got = [eng.map(ev(f"/nn/r/grad_norm/l{i}", 1.0, t=i)) for i in range(5)]
    assert [len(g) for g in got] == [1, 1, 1, 0, 0] and eng.counters.voice_limit == 2


def test_pattern_wildcards() -> None:
    assert compile_pattern("/nn/*/loss").fullmatch("/nn/anything/loss")
    assert not compile_pattern("/nn/*/loss").fullmatch("/nn/a/b/loss")
    assert compile_pattern("/nn/{run}/metric/{name}").fullmatch("/nn/r/metric/lr").groupdict() == {  # type: ignore[union-attr]
        "run": "r", "name": "lr",
    }


def test_engine_from_toml_rules() -> None:
    c: Config = from_dict({"mappings": [{"match": "/nn/{run}/loss", "target": "pitchbend", "scale": "linear"}]})
    eng = Engine(c)
    [m] = eng.map(ev("/nn/x/loss", 0.0))
    assert m.midi == (mb.pitch_bend(1, 0),)


def test_forgetting_runs_frees_their_voices_and_keeps_the_others() -> None:
    eng = Engine(ungrouped())
    for t, (run, layer) in enumerate([("a", "l1"), ("b", "l1"), ("a", "l2"), ("c", "l1")]):
        eng.map(ev(f"/nn/{run}/grad_norm/{layer}", 1.0, t=t))
    assert eng.voices()["run,layer"] == ["a/l1", "b/l1", "a/l2", "c/l1"]
    eng.forget_runs({"a"})
    [b] = eng.map(ev("/nn/b/grad_norm/l1", 1.0, t=10))
    [c] = eng.map(ev("/nn/c/grad_norm/l1", 1.0, t=10))
    assert (b.voice, c.voice) == (1, 3)  # still where they were
    [d1] = eng.map(ev("/nn/d/grad_norm/l1", 1.0, t=11))
    [d2] = eng.map(ev("/nn/d/grad_norm/l2", 1.0, t=11))
    [d3] = eng.map(ev("/nn/d/grad_norm/l3", 1.0, t=11))
    assert (d1.voice, d2.voice, d3.voice) == (0, 2, 4)  # freed slots first, lowest first


@pytest.mark.parametrize("name, cc", [("acc", 11), ("accuracy", 11), ("val_acc", 75), ("val_accuracy", 75),
                                      ("lr", 72), ("learning_rate", 72), ("grad_norm", 73)])
def test_the_default_mapping_knows_common_metric_names(name: str, cc: int) -> None:
    [m] = Engine(default()).map(ev(f"/nn/r/metric/{name}", 0.5))
    assert m.target == "cc" and m.midi[0][1] == cc
