"""The fault detectors and the alarm watch, in process: healthy runs raise none, each injected fault is named
within ±5 steps, one fault is one alarm, the global rate limit holds, bad ``[alarms]`` keys are named."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from faults import EXPECTED, TICKS, Step, faulty, healthy

from trainsound.bridge.alarms.options import ALARM_KINDS
from trainsound.bridge.alarms.watch import Alarm
from trainsound.bridge.config import ConfigError, default, from_dict
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.replay.alarms import AlarmLog
from trainsound.bridge.wire.osc import encode_message


def run_session(steps: list[Step], cfg: dict[str, object] | None = None, dt: float = 0.01,
                ticks: bool = False) -> list[Alarm]:
    """Every sounded alarm of a session fed through the real pipeline (mapping engine + watch)."""
    config = from_dict(cfg or {})
    log = AlarmLog(ticks=ticks)
    pipe = Pipeline(config, [log])
    for i, msgs in enumerate(steps):
        for address, args in msgs:
            pipe.feed_message(1000.0 + i * dt, encode_message(address, args))
        pipe.tick(1000.0 + i * dt)
    pipe.close()
    return log.alarms


@pytest.mark.parametrize("seed", range(5))
def test_a_healthy_2000_step_run_raises_no_alarm(seed: int) -> None:
    steps = healthy(steps=2000, seed=seed)
    assert len(steps) == 2000
    alarms = run_session(steps, ticks=True)
    assert [a for a in alarms if not a.tick] == []
    # …but it does tick at its epoch boundaries and learning-rate drops.
    assert [(a.kind, a.step) for a in alarms if a.tick] == [
        ("epoch", 400), ("epoch", 800), ("lr", 800), ("epoch", 1200), ("epoch", 1600), ("lr", 1600)]


def test_each_injected_fault_is_named_within_five_steps() -> None:
    alarms = run_session(faulty(), ticks=True)
    got = {a.kind: a for a in alarms}
    assert sorted(k for k in got if k in ALARM_KINDS) == sorted(EXPECTED)
    assert len([a for a in alarms if not a.tick]) == len(EXPECTED)  # one fault, one alarm
    for kind, (name, step) in EXPECTED.items():
        a = got[kind]
        assert (a.run, a.name) == ("bad", name), a
        assert abs(a.step - step) <= 5, a
    for kind, step in TICKS.items():
        assert got[kind].step == step


def test_a_lasting_fault_is_one_alarm_per_hold_off() -> None:
    steps = healthy(steps=600, seed=3)
    for i in range(300, 600):  # fc1 stays 100× too large for 300 steps
        steps[i] = [(a, [args[0] * 100.0] if a.endswith("/fc1") else args) for a, args in steps[i]]
    alarms = [a for a in run_session(steps) if not a.tick]
    assert [(a.kind, a.name, a.step) for a in alarms] == [("exploding", "fc1", 300)]
    short = [a for a in run_session(steps, {"alarms": {"exploding": {"hold_off": 10}}}) if not a.tick]
    assert len(short) > 1  # with a short hold-off it speaks up again (the median has not adapted yet)


def test_kinds_can_be_switched_off_and_the_thresholds_moved() -> None:
    alarms = run_session(faulty(), {"alarms": {"spike": {"enabled": False}, "dead": {"rounds": 50}}})
    kinds = {a.kind for a in alarms}
    assert "spike" not in kinds and "dead" not in kinds and "plateau" in kinds
    assert run_session(faulty(), {"alarms": {"enabled": False}}) == [
        a for a in run_session(faulty(), {"alarms": {"enabled": False}}) if a.kind == "nan"] == []


def test_a_nan_on_every_address_is_one_incident() -> None:
    """2,000 non-finite layers of one run: one NaN incident (one alarm sounds), every layer its member."""
    log = AlarmLog()
    pipe = Pipeline(default(), [log])
    for i in range(2000):
        pipe.feed_message(1000.0 + i / 2000, encode_message(f"/nn/r/grad_norm/layer{i}", [math.nan]))
    assert [(a.kind, a.name) for a in log.alarms] == [("nan", "layer0")]
    [inc] = pipe.engine.watch.status()["recent"]
    assert (inc["kind"], inc["streams"], inc["members"][:2]) == ("nan", 2000, ["layer0", "layer1"])
    assert inc["name"] == "nan in layer0 and 1999 more streams"
    pipe.close()


def test_the_global_rate_limit_holds_over_all_runs() -> None:
    """NaNs in 2,000 runs within one second: 2,000 incidents, all listed; ``[alarm].max_per_second`` (a budget of
    one second's worth, refilled at that rate) sounds, the rest is counted; the detectors draw on the same budget."""
    log = AlarmLog()
    pipe = Pipeline(default(), [log])
    for i in range(2000):
        pipe.feed_message(1000.0 + i / 2000, encode_message(f"/nn/r{i}/loss", [math.nan]))
    rate = default().alarm.max_per_second
    assert rate + 1 <= len(log.alarms) <= 2 * rate + 1
    watch, counters = pipe.engine.watch, pipe.engine.counters
    assert watch.rate_limited == counters.alarms_limited == 2000 - len(log.alarms)
    assert counters.alarms == len(log.alarms)
    st = watch.status()
    assert st["raised"]["nan"] == 2000 and len(watch.incidents.history) == 2000
    # The budget is spent: a detector's alarm at the same moment is counted, not sounded.
    sounded = len(log.alarms)
    assert watch.allow(1000.9996) is False and watch.rate_limited == 2001 - sounded
    pipe.close()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[alarms.spike]\nz = 0.5\n", "alarms.spike.z must be in 1..1000, got 0.5"),
        ("[alarms.plateau]\nwindow = -300\n", "alarms.plateau.window must be in 5..1000000, got -300"),
        ("[alarms.vanishing]\nfraction = 2.0\n", "alarms.vanishing.fraction must be in 1e-15..0.9, got 2.0"),
        ("[alarms.explode]\nfactor = 20\n", "alarms.explode: unknown alarm kind 'explode'"),
        ("[alarms]\nrecent = 0\n", "alarms.recent must be in 1..10000, got 0"),
        ("[alarms.divergence]\nrise = 1.5\nwindoww = 5\n", "alarms.divergence.windoww is not a known key"),
        ("[alarms.ticks]\nlr_change = -1\n", "alarms.ticks.lr_change must be in 1e-06..1e+06, got -1"),
        ("[alarms.nan]\nnote = 200\n", "alarms.nan.note must be in 0..127, got 200"),
    ],
)
def test_check_config_names_the_bad_alarms_key(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        from_dict(__import__("tomllib").loads(toml))
    p = subprocess.run([sys.executable, "-m", "trainsound.bridge", "check-config", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_the_nan_note_follows_the_alarm_table_and_each_kind_has_its_own() -> None:
    cfg = from_dict({"alarm": {"note": 100}})
    notes = {k: o.note for k, o in cfg.alarms.kinds.items()}
    assert notes["nan"] == 100 and len(set(notes.values())) == len(ALARM_KINDS)


def test_the_watch_bounds_its_state_per_run() -> None:
    from trainsound.bridge.alarms.watch import MAX_GRAD_STREAMS, Watch

    w = Watch(default().alarms)
    for i in range(MAX_GRAD_STREAMS + 100):
        w.grad(0.0, "r", f"layer{i}", 1.0)
    assert w.unwatched == 100 and w.status()["unwatched"] == 100
    w.forget_runs({"r"})
    assert w.step_of("r") == -1


def lr_run(schedule: list[float], run: str = "r") -> list[Step]:
    """A quiet run whose only news is its learning rate (HF's schedules, as the Trainer computes them)."""
    return [[(f"/nn/{run}/step", [s]), (f"/nn/{run}/loss", [2.0 * (1 + s / 50) ** -0.5 * (1 + 0.01 * (s % 3))]),
             (f"/nn/{run}/metric/lr", [lr])] for s, lr in enumerate(schedule)]


def warmup_cosine(steps: int, warmup: int, cycles: int = 1) -> list[float]:
    """transformers' get_cosine_with_hard_restarts_schedule_with_warmup (cycles=1: the plain cosine)."""
    out = []
    for s in range(steps):
        if s < warmup:
            out.append(1e-3 * s / warmup)
            continue
        p = (s - warmup) / (steps - warmup)
        out.append(1e-3 * 0.5 * (1 + math.cos(math.pi * ((cycles * p) % 1.0))))
    return out


def test_a_smooth_schedule_never_ticks_and_its_jumps_do() -> None:
    """Issue 22: an HF cosine schedule gave 97 lr ticks in 800 steps; a tick marks a step decay or a restart."""
    assert [a for a in run_session(lr_run(warmup_cosine(800, 80)), ticks=True)] == []
    restarts = [a for a in run_session(lr_run(warmup_cosine(800, 80, cycles=3)), ticks=True)]
    assert [(a.kind, a.step) for a in restarts] == [("lr", 320), ("lr", 560)]


def test_a_learning_rate_set_to_zero_is_a_plateau_at_once() -> None:
    """Training stalls from the next step: named at the step, not a plateau window (300 steps) later."""
    lrs = [1e-3] * 200 + [0.0] * 400
    alarms = run_session(lr_run(lrs), ticks=True)
    assert [(a.kind, a.name, a.step) for a in alarms if not a.tick] == [("plateau", "lr", 200)]
    # …and a cosine that ends at 0, or a healthy schedule's end, is not.
    assert [a for a in run_session(lr_run([*warmup_cosine(400, 40), 0.0]), ticks=True) if not a.tick] == []
