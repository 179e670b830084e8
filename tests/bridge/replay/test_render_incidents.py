"""Incidents on a recording (issue 22, items 1, 5, 6): a session recorded by the real bridge — twelve layers that
explode at one step, then a NaN that spreads to every address and stays — gives one entry per incident with
its members, the same answer however it is rendered, printed times that lie inside the rendered audio, and
the same incidents the live bridge listed."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from support import BridgeProc, free_udp_port

LAYERS = [f"transformer.h.{i}.{part}" for i in range(6) for part in ("attn", "mlp")]
EXPLODE, NAN = 150, 250
STEPS = 300
TS = [sys.executable, "-m", "trainsound.bridge"]


def session() -> list[list[tuple[str, list[Any]]]]:
    rng = np.random.default_rng(7)
    out = []
    for s in range(STEPS):
        loss = 3.0 * (1 + s / 50) ** -0.3 * math.exp(0.01 * rng.standard_normal())
        msgs: list[tuple[str, list[Any]]] = [("/nn/gpt/step", [s]), ("/nn/gpt/loss", [math.nan if s >= NAN else loss])]
        for name in LAYERS:
            g = 0.5 * math.exp(0.1 * rng.standard_normal()) * (50.0 if s == EXPLODE else 1.0)
            msgs.append((f"/nn/gpt/grad_norm/{name}", [math.nan if s >= NAN else g]))
        out.append(msgs)
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("incidents")
    tsr = tmp / "run.tsr"
    b = BridgeProc(["--no-midi", "--record", str(tsr)], free_udp_port())
    try:
        t0 = time.monotonic()
        for i, msgs in enumerate(session()):
            delay = t0 + i * 0.004 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for address, args in msgs:
                b.send(address, *args)
        time.sleep(0.5)
        status = b.status()
    finally:
        code, err = b.stop()
    assert code == 0, err
    return {"tsr": tsr, "tmp": tmp, "status": status}


def render(*args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([*TS, "render", *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p


def test_one_entry_per_incident_with_its_members(recorded: dict[str, Any]) -> None:
    out = recorded["tmp"] / "a.json"
    render(str(recorded["tsr"]), "--alarms-json", str(out))
    found = json.loads(out.read_text())
    assert [(i["kind"], i["step"]) for i in found] == [("exploding", EXPLODE), ("nan", NAN)]
    boom, nan = found
    assert set(boom) >= {"run", "kind", "step", "time", "name", "members"}
    # The layers and their voice groups' aggregates: one incident.
    assert set(boom["members"]) == {*LAYERS, *(f"group h.{i}" for i in range(6))}
    assert boom["name"] == "exploding in h.0–h.5 (12 layers)"
    assert nan["streams"] == 1 + len(LAYERS) and nan["members"][0] == "loss"  # one NaN incident, to the end
    assert nan["last_step"] == STEPS - 1
    # The live bridge listed the same incidents.
    live = recorded["status"]["alarms"]["recent"]
    assert [(i["kind"], i["step"], i["name"], i["members"]) for i in live] == [
        (i["kind"], i["step"], i["name"], i["members"]) for i in found]
    assert recorded["status"]["mapping"]["alarms"] == 2  # one sound per incident


def test_one_recording_one_answer_and_times_inside_the_audio(recorded: dict[str, Any]) -> None:
    tmp, tsr = recorded["tmp"], str(recorded["tsr"])
    render(tsr, "--alarms-json", str(tmp / "plain.json"))
    wav = tmp / "run.wav"
    p = render(tsr, "--wav", str(wav), "--alarms", "--alarms-json", str(tmp / "wav.json"))
    assert json.loads((tmp / "plain.json").read_text()) == json.loads((tmp / "wav.json").read_text())
    info = sf.info(str(wav))
    times = [float(m.group(1)) for m in re.finditer(r"^step +\d+ +(-?[\d.]+) s ", p.stdout, re.M)]
    assert len(times) == 2, p.stdout
    assert all(0.0 <= t <= info.duration for t in times), (times, info.duration)
    # On the step clock (8 steps a second by default) step 150 is about 150/8 s into the render.
    assert times[0] == pytest.approx(EXPLODE / 8.0, abs=0.5)
