"""The aligner of ``--reference``: each run's own steps, the same stream without the run, hold-last inside the
reference's steps, unmatched streams logged once (real engine, real recordings through the loader)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from trainsound.bridge.config import default
from trainsound.bridge.mapping.deviation import Aligner, DeviationCcs, deviation
from trainsound.bridge.mapping.engine import Engine
from trainsound.bridge.replay.reference import load
from trainsound.bridge.wire.protocol import parse_event
from trainsound.bridge.wire.session import SessionWriter, encode_message


def record(path: Path, run: str, steps: int, scale: float = 1.0, extra: bool = False) -> Path:
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        t = 0.0
        for s in range(steps):
            msgs = [(f"/nn/{run}/step", [s]), (f"/nn/{run}/loss", [1.0 / (s + 1)]),
                    (f"/nn/{run}/grad_norm/fc1", [0.5 * (scale if s >= 5 else 1.0)]),
                    (f"/nn/{run}/grad_norm/fc2", [0.25])]
            if extra:
                msgs.append((f"/nn/{run}/grad_norm/head", [0.1]))
            for address, args in msgs:
                w.write(t, encode_message(address, args))
                t += 0.2  # slower than every rate limit
        w.flush()
    return path


def feed(engine: Engine, aligner: Aligner, address: str, value: float, t: float) -> list[tuple[str, int, float]]:
    ev = parse_event(address, (value,), t, b"")
    return [("/".join(x.m.stream), x.step, x.deviation) for x in aligner.apply(ev, engine.map(ev))]


def test_a_run_is_matched_by_its_own_steps_whatever_its_name(tmp_path: Path) -> None:
    cfg = default()
    ref = load(record(tmp_path / "ref.tsr", "base", 10), cfg)
    eng, al = Engine(cfg), Aligner(ref, cfg.mappings)
    assert feed(eng, al, "/nn/new/loss", 1.0, 0.0) == []  # no step yet: nothing to align with
    feed(eng, al, "/nn/new/step", 3, 1.0)
    assert feed(eng, al, "/nn/new/loss", 0.25, 1.1) == [("new", 3, 0.0)]
    assert feed(eng, al, "/nn/new/loss", 2.5, 2.0) == [("new", 3, 1.0)]  # tenfold: one decade
    feed(eng, al, "/nn/new/step", 10, 3.0)
    assert feed(eng, al, "/nn/new/loss", 1.0, 3.1) == []  # beyond the reference's last step


def test_groups_match_by_name_and_unmatched_streams_are_logged_once(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    cfg = default()
    ref = load(record(tmp_path / "ref.tsr", "base", 10, scale=10.0), cfg)
    assert {"fc1 (grad_norm_notes)", "fc2 (grad_norm_notes)"} <= {ref.labels[k] for k in ref.groups}
    eng, al = Engine(cfg), Aligner(ref, cfg.mappings)
    got = []
    with caplog.at_level(logging.INFO, logger="trainsound.bridge.mapping.deviation"):
        for s in range(8):
            t = s * 1.0
            got += feed(eng, al, "/nn/r/step", s, t)
            got += feed(eng, al, "/nn/r/loss", 1.0 / (s + 1), t + 0.2)
            for i, (name, v) in enumerate((("fc1", 0.5), ("fc2", 0.25), ("head", 0.1))):
                got += feed(eng, al, f"/nn/r/grad_norm/{name}", v, t + 0.3 + 0.1 * i)
    fc1 = [(step, d) for name, step, d in got if name == "r/fc1"]
    assert fc1 and all(d == 0.0 for step, d in fc1 if step < 5)
    assert [d for step, d in fc1 if step >= 5] and all(d == pytest.approx(-1.0) for step, d in fc1 if step >= 5)
    lines = [r.getMessage() for r in caplog.records if "has no stream" in r.getMessage()]
    assert lines == [f"reference {ref.path} (run base) has no stream head (grad_norm_notes): it is not compared"]


def test_the_deviation_cc_is_sent_when_it_changes(tmp_path: Path) -> None:
    cfg = default()
    ref = load(record(tmp_path / "ref.tsr", "base", 10), cfg)
    eng, ccs = Engine(cfg), DeviationCcs(ref, cfg.mappings)
    out = []
    for s, loss in enumerate((1.0, 0.5, 0.4)):
        for ev in (parse_event("/nn/r/step", (s,), s, b""), parse_event("/nn/r/loss", (loss,), s + 0.1, b"")):
            out += [msg.hex() for _, msg in ccs.messages(ev, eng.map(ev))]
    # step 0: agree (64); step 1: agree again (the same CC: not sent); step 2: 0.4 against 1/3 (+0.079 decades)
    assert out == ["b06640", f"b066{round(64 + 63 * math.log10(1.2) / 2):02x}"]


def test_deviation_is_signed_and_finite_or_nan() -> None:
    assert deviation(1.0, 10.0) == -1.0
    assert math.isnan(deviation(math.inf, 1.0))
