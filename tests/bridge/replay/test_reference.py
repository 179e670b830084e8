"""A run against its reference (issue 25), on two real trainings: the same tiny MLP, same seed, one thread, sent
by the real ``trainsound.watch`` to real bridges recording them; the second has one layer's gradient made
tenfold from step :data:`FAULT` on for a few steps, while its bridge already compares it live with the first.

Offline: ``render --reference --preset diff`` is silent before the fault and loud after it; ``ab`` of a run
against itself gives two equal channels; ``compare`` names the fault's step for the layer it hit. Live: the
bridge's OSC ``/trainsound/deviation`` is zero before the fault and not after it. Bad input: one line, exit 2.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from support import BridgeProc, free_udp_port

from trainsound.bridge.mapping.deviation import DEFAULT_TOLERANCE
from trainsound.bridge.replay.loop import StepClock
from trainsound.bridge.replay.reference import scan
from trainsound.bridge.replay.render import DEFAULT_STEPS_PER_SECOND
from trainsound.bridge.wire.osc import decode_message
from trainsound.bridge.wire.session import SessionWriter, encode_message

pytestmark = pytest.mark.slow

STEPS = 120
FAULT = 60
FAULT_STEPS = 5
RUN = "mlp"


def train(port: int, fault: bool) -> None:
    """A tiny MLP, seeded; with ``fault``, fc3's gradient ×10 at steps FAULT … FAULT+4 (after backward, before
    the optimizer step: the gradient norms the client measures carry it)."""
    import torch
    from torch import nn

    import trainsound

    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = (x[:, :3].sum(1) > 0).long()

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 2)

        def forward(self, xb: Any) -> Any:
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(xb)))))

    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = trainsound.watch(model, run=RUN, port=port)
    for s in range(STEPS):
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        if fault and FAULT <= s < FAULT + FAULT_STEPS:
            for p in model.fc3.parameters():
                assert p.grad is not None
                p.grad.mul_(10.0)
        opt.step()
    w.close()


class Tap:
    """Collects the bridge's ``/trainsound/deviation`` messages."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.deviations: list[tuple[Any, ...]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                address, args = decode_message(self.sock.recv(65536))
            except TimeoutError:
                continue
            if address == "/trainsound/deviation":
                self.deviations.append(tuple(args))

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("reference")
    clean, faulty = folder / "clean.tsr", folder / "faulty.tsr"
    b = BridgeProc(["--no-midi", "--record", str(clean)], free_udp_port())
    try:
        train(b.port, fault=False)
        time.sleep(0.3)
    finally:
        rc, err = b.stop()
    assert rc == 0, err
    tap = Tap()
    b = BridgeProc(["--no-midi", "--record", str(faulty), "--reference", str(clean),
                    "--osc-out", f"127.0.0.1:{tap.port}"], free_udp_port())
    try:
        train(b.port, fault=True)
        time.sleep(0.3)
    finally:
        rc, err = b.stop()
        time.sleep(0.1)
        tap.close()
    assert rc == 0, err
    return {"folder": folder, "clean": clean, "faulty": faulty, "live": tap.deviations}


def trainsound(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainsound.bridge", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def step_seconds(session: Path, step: int) -> float:
    """Where ``step`` lies in a default render of ``session`` (the render's step clock)."""
    found = scan(session)
    r = found.runs[RUN]
    clock = StepClock(found.first, found.last, [r.step_times], DEFAULT_STEPS_PER_SECOND)
    return clock(r.step_times[r.steps.index(step)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def test_the_recorded_runs_are_the_same_run_until_the_fault(runs: dict[str, Any]) -> None:
    a, b = scan(runs["clean"]).runs[RUN], scan(runs["faulty"]).runs[RUN]
    assert a.steps == b.steps == list(range(STEPS))
    assert {"loss", "grad_norm/fc1", "grad_norm/fc2", "grad_norm/fc3"} <= set(a.streams) == set(b.streams)


def test_diff_is_silent_before_the_fault_and_loud_after(runs: dict[str, Any]) -> None:
    wav = runs["folder"] / "diff.wav"
    p = trainsound("render", runs["faulty"], "--wav", wav, "--preset", "diff", "--reference", runs["clean"])
    assert p.returncode == 0, p.stderr
    x, sr = sf.read(str(wav), dtype="float64")
    t = step_seconds(runs["faulty"], FAULT)
    before = x[: int((t - 0.02) * sr)]
    after = x[int((t + 0.05) * sr) :]
    r0, r1 = rms(before), rms(after)
    assert len(before) > 5 * sr  # 60 steps at 8 a second
    assert r1 > 0.01, r1  # clearly audible
    assert r0 * 10 <= r1, (r0, r1)
    # The first sound comes with the fault's step, not before.
    loud = np.flatnonzero(np.abs(x).max(axis=1) > 1e-4)
    assert loud.size and abs(loud[0] / sr - t) < 0.05, (loud[0] / sr, t)


def test_ab_of_a_run_against_itself_has_equal_channels(runs: dict[str, Any]) -> None:
    wav = runs["folder"] / "ab-self.wav"
    p = trainsound("render", runs["clean"], "--wav", wav, "--preset", "ab", "--reference", runs["clean"])
    assert p.returncode == 0, p.stderr
    x, _ = sf.read(str(wav), dtype="float64")
    assert rms(x[:, 0]) > 0.01
    assert np.abs(x[:, 0] - x[:, 1]).max() <= 1e-6 * np.abs(x).max()


def test_ab_splits_where_the_run_parts(runs: dict[str, Any]) -> None:
    wav = runs["folder"] / "ab.wav"
    p = trainsound("render", runs["faulty"], "--wav", wav, "--preset", "ab", "--reference", runs["clean"])
    assert p.returncode == 0, p.stderr
    x, sr = sf.read(str(wav), dtype="float64")
    t = step_seconds(runs["faulty"], FAULT)
    side = x[:, 0] - x[:, 1]
    assert np.abs(side[: int((t - 0.02) * sr)]).max() <= 1e-6
    assert rms(side[int((t + 0.05) * sr) :]) > 0.01


def test_compare_names_the_faults_step(runs: dict[str, Any]) -> None:
    p = trainsound("compare", runs["faulty"], runs["clean"], "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    rows = {r["name"]: r for r in result["streams"]}
    assert result["steps"] == [0, STEPS - 1] and result["tolerance"] == DEFAULT_TOLERANCE
    assert rows["grad_norm/fc3"]["first_step"] == FAULT  # the layer the fault hit, in its very step
    assert rows["fc3 (grad_norm_notes)"]["first_step"] == FAULT  # and its voice group
    assert rows["grad_norm/fc3"]["max_deviation"] == pytest.approx(1.0, abs=0.05)  # tenfold: one decade
    for name in ("loss", "grad_norm/fc1", "grad_norm/fc2"):
        assert rows[name]["first_step"] == FAULT + 1, name  # the rest part once the weights took the step
    text = trainsound("compare", runs["faulty"], runs["clean"])
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("grad_norm/fc3 "))
    assert line.split()[1] == str(FAULT)


def test_compare_of_a_run_with_itself_finds_nothing(runs: dict[str, Any]) -> None:
    p = trainsound("compare", runs["clean"], runs["clean"], "--json")
    assert p.returncode == 0, p.stderr
    assert all(r["first_step"] is None and r["max_deviation"] == 0.0 for r in json.loads(p.stdout)["streams"])


def test_the_live_bridge_sends_the_deviation(runs: dict[str, Any]) -> None:
    devs = runs["live"]
    # (run, name, voice, deviation, value, reference, step, rule)
    assert devs and all(d[0] == RUN for d in devs)
    early = [d for d in devs if d[6] < FAULT]
    late = [d for d in devs if d[6] >= FAULT]
    assert early and late
    assert max(abs(d[3]) for d in early) <= DEFAULT_TOLERANCE
    assert max(abs(d[3]) for d in late) > 0.05
    # Live, rate limits thin the notes (a step takes milliseconds); those of fc3 sent in the fault are up by about a
    # decade: exactly one at the fault's first step (the same weights and batch, the gradient ×10), after it the
    # weights have moved apart (e.g. 0.94 at a later fault step).
    fc3 = [d for d in late if d[1] == "fc3" and d[7] == "grad_norm_notes" and d[6] < FAULT + FAULT_STEPS]
    assert all(d[3] > 0.5 for d in fc3), fc3
    assert all(d[3] == pytest.approx(1.0, abs=0.01) for d in fc3 if d[6] == FAULT), fc3


# -- bad input: one line naming the file, exit 2 ------------------------------------------------------------
def write(path: Path, messages: list[tuple[str, list[Any]]]) -> Path:
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=1000.0)
        for i, (address, args) in enumerate(messages):
            w.write(1000.0 + i * 0.01, encode_message(address, args))
        w.flush()
    return path


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainsound: error: "), p.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["render", "compare"])
def test_bad_references_are_one_line(runs: dict[str, Any], tmp_path: Path, command: str) -> None:
    stepless = write(tmp_path / "stepless.tsr", [(f"/nn/{RUN}/loss", [1.0])] * 3)
    other = write(tmp_path / "other.tsr", [(f"/nn/{RUN}/step", [0]), (f"/nn/{RUN}/metric/acc", [0.5])])
    late = write(tmp_path / "late.tsr", [(f"/nn/{RUN}/step", [5000]), (f"/nn/{RUN}/loss", [0.5])])
    two = write(tmp_path / "two.tsr", [("/nn/a/step", [0]), ("/nn/a/loss", [1.0]), ("/nn/b/step", [0])])

    def run(ref: Path, *extra: str) -> str:
        if command == "render":
            return one_line_error(trainsound("render", runs["clean"], "--wav", tmp_path / "x.wav", "--preset",
                                             "diff", "--reference", ref, *extra))
        return one_line_error(trainsound("compare", runs["clean"], ref, *extra))

    assert "stepless.tsr" in run(stepless) and "no step messages" in run(stepless)
    assert "other.tsr" in run(other) and "no stream in common" in run(other)
    assert "late.tsr" in run(late) and "do not overlap" in run(late)
    assert "two.tsr" in run(two) and "--reference-run" in run(two)
    assert "has no run 'c'" in run(two, "--reference-run", "c")
    assert "missing.tsr" in run(tmp_path / "missing.tsr")


def test_a_preset_that_compares_needs_a_reference(runs: dict[str, Any], tmp_path: Path) -> None:
    line = one_line_error(trainsound("render", runs["clean"], "--wav", tmp_path / "x.wav", "--preset", "ab"))
    assert "--reference" in line
    line = one_line_error(trainsound("bridge", "--no-midi", "--wav", tmp_path / "x.wav", "--preset", "diff"))
    assert "--reference" in line
