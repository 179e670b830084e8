"""Alarms through the real bridge process: a scripted session injects one fault of each kind at known steps;
a real OSC peer and the MIDI file name each within ±5 steps, ``trainsound status`` lists them, the healthy
session raises none, and the render of the recording holds each earcon at its time (found in the audio),
followed by speech with ``--speak``."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
import soundfile as sf
from faults import EXPECTED, TICKS, Step, faulty, healthy
from pythonosc.osc_message import OscMessage
from scipy.signal import fftconvolve
from support import BridgeProc, free_udp_port

from trainsound.bridge.alarms.options import DEFAULT_NOTES
from trainsound.bridge.sound.alarms import earcon
from trainsound.bridge.wire.session import iter_messages

#: Seconds between steps as sent: ±5 steps are ±20 ms of arrival time.
FAULTY_DT = 0.004
HEALTHY_DT = 0.002
TOLERANCE = 5


class OscPeer:
    """A plain UDP socket decoded by python-osc: an OSC implementation that is not the bridge's."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.messages: list[tuple[str, list[Any]]] = []
        self._stop = False
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            m = OscMessage(data)
            self.messages.append((m.address, list(m.params)))

    def of(self, address: str) -> list[list[Any]]:
        return [args for a, args in self.messages if a == address]

    def close(self) -> None:
        self._stop = True
        self._t.join()
        self.sock.close()


def send_paced(b: BridgeProc, steps: list[Step], dt: float) -> None:
    t0 = time.monotonic()
    for i, msgs in enumerate(steps):
        delay = t0 + i * dt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for address, args in msgs:
            b.send(address, *args)


def run_bridge(tmp: Path, steps: list[Step], dt: float, name: str) -> dict[str, Any]:
    peer = OscPeer()
    mid, tsr = tmp / f"{name}.mid", tmp / f"{name}.tsr"
    b = BridgeProc(["--no-midi", "--osc-out", f"127.0.0.1:{peer.port}", "--midi-file", str(mid),
                    "--record", str(tsr)], free_udp_port())
    try:
        send_paced(b, steps, dt)
        time.sleep(0.5)
        status = b.status()
        cli = subprocess.run([sys.executable, "-m", "trainsound.bridge", "status", "--to", f"127.0.0.1:{b.port}"],
                             capture_output=True, text=True, timeout=60)
    finally:
        code, err = b.stop(signal.SIGTERM)
        peer.close()
    assert code == 0, err
    assert " failed in " not in err, err  # no output raised (the pipeline logs and goes on)
    return {"osc": peer, "mid": mid, "tsr": tsr, "status": status, "status_text": cli.stdout, "stderr": err}


def step_times(tsr: Path, run: str) -> tuple[float, dict[int, float]]:
    """The recording's first time and each step message's arrival time."""
    first = None
    times: dict[int, float] = {}
    for t, address, args in iter_messages(tsr):
        first = t if first is None else first
        if address == f"/nn/{run}/step":
            times[int(args[0])] = t  # type: ignore[arg-type]
    assert first is not None
    return first, times


def step_at(times: dict[int, float], t: float) -> int:
    """The last step that had arrived by time ``t``."""
    return max((s for s, ts in times.items() if ts <= t + 1e-6), default=-1)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield run_bridge(tmp_path_factory.mktemp("faulty"), faulty(), FAULTY_DT, "faulty")


def test_osc_out_names_each_fault_within_five_steps(faulty_run: dict[str, Any]) -> None:
    alarms = faulty_run["osc"].of("/trainsound/alarm")
    got = {kind: (run, name, step) for run, name, kind, step in alarms}
    assert len(alarms) == len(EXPECTED), alarms  # one fault, one alarm
    for kind, (name, step) in EXPECTED.items():
        run, got_name, got_step = got[kind]
        assert (run, got_name) == ("bad", name)
        assert abs(got_step - step) <= TOLERANCE, (kind, got_step, step)
    ticks = {kind: step for _, kind, step in faulty_run["osc"].of("/trainsound/tick")}
    assert ticks == TICKS


def test_the_midi_file_has_each_kinds_note_at_its_step(faulty_run: dict[str, Any]) -> None:
    first, times = step_times(faulty_run["tsr"], "bad")
    mf = mido.MidiFile(str(faulty_run["mid"]))
    kind_of = {n: k for k, n in DEFAULT_NOTES.items()}
    found: dict[str, list[float]] = {}
    origin = None
    for tr in mf.tracks[1:]:
        t = 0
        for msg in tr:
            t += msg.time
            if msg.is_meta:
                continue
            secs = mido.tick2second(t, mf.ticks_per_beat, 500_000)
            origin = secs if origin is None else min(origin, secs)
            if msg.type == "note_on" and msg.velocity > 0 and msg.channel == 15:  # the alarm channel, 16
                found.setdefault(kind_of[msg.note], []).append(secs)
    assert sorted(found) == sorted([*EXPECTED, *TICKS])
    assert all(len(v) == 1 for v in found.values()), found
    # The file's time 0 is its first message (step 0's loss or grad norm).
    t0 = first - (origin or 0.0)
    tick = mido.tick2second(1, mf.ticks_per_beat, 500_000)
    for kind, (_, step) in {**EXPECTED, **{k: ("", s) for k, s in TICKS.items()}}.items():
        # MIDI ticks are ~1 ms: when the bridge catches up on a burst, several steps arrive within one tick.
        at = t0 + found[kind][0]
        near = {s for s, ts in times.items() if abs(ts - at) <= 2 * tick} | {step_at(times, at)}
        assert min(abs(s - step) for s in near) <= TOLERANCE, (kind, sorted(near), step)


def test_status_lists_the_recent_alarms(faulty_run: dict[str, Any]) -> None:
    a = faulty_run["status"]["alarms"]
    assert [r["kind"] for r in a["recent"]] == list(EXPECTED)
    assert {k for k, n in a["raised"].items() if n} == set(EXPECTED)
    assert set(a["recent"][0]) == {"run", "name", "kind", "kinds", "step", "value", "time", "members", "last_step",
                                   "streams"}
    text = faulty_run["status_text"]
    assert "alarms: spike 1, plateau 1, divergence 1, exploding 1, vanishing 1, dead 1, nan 1" in text
    assert "run bad  vanishing in conv2  value" in text and "run bad  run bad dead  value" in text


def test_render_alarms_replays_the_detectors_on_the_recording(faulty_run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "alarms.json"
    p = subprocess.run([sys.executable, "-m", "trainsound.bridge", "render", str(faulty_run["tsr"]), "--alarms",
                        "--alarms-json", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert [ln.split()[-3] for ln in lines] == list(EXPECTED)
    import json

    data = json.loads(out.read_text())
    live = faulty_run["status"]["alarms"]["recent"]
    assert [(d["kind"], d["name"], d["step"]) for d in data] == [(d["kind"], d["name"], d["step"]) for d in live]
    # replay --alarms (no other output needed) prints the same lines.
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "replay", str(faulty_run["tsr"]), "--alarms"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == p.stdout


def matched(x: np.ndarray, tpl: np.ndarray) -> float:
    """Best normalised cross-correlation of ``tpl`` in ``x``."""
    c = fftconvolve(x, tpl[::-1], mode="valid")
    e = np.sqrt(np.maximum(fftconvolve(x * x, np.ones(len(tpl)), mode="valid"), 1e-12))
    return float((c / (e * np.linalg.norm(tpl))).max())


def render(tsr: Path, wav: Path, *extra: str) -> tuple[np.ndarray, int]:
    # On the recorded clock: the expected times below are the recording's (renders default to the step clock).
    p = subprocess.run([sys.executable, "-m", "trainsound.bridge", "render", str(tsr), "--wav", str(wav),
                        "--clock", "wall", *extra],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    x, sr = sf.read(str(wav), dtype="float32")
    assert np.isfinite(x).all()
    return x.sum(axis=1), sr


def alarm_seconds(run: dict[str, Any]) -> dict[str, float]:
    """Where each alarm belongs in a render of the recording: the arrival of the step the bridge named (OSC out;
    within ±5 steps of the injection, checked above), from the recording's start."""
    first, times = step_times(run["tsr"], "bad")
    return {kind: times[step] - first for _, _, kind, step in run["osc"].of("/trainsound/alarm")}


def test_the_wav_render_holds_each_earcon_at_its_time(faulty_run: dict[str, Any], tmp_path: Path) -> None:
    x, sr = render(faulty_run["tsr"], tmp_path / "f.wav")
    for kind, at in alarm_seconds(faulty_run).items():
        a, b = int((at - 0.05) * sr), int((at + 0.1) * sr)
        scores = {k: matched(x[a:b + len(earcon(k, sr))], earcon(k, sr)) for k in EXPECTED}
        assert max(scores, key=scores.__getitem__) == kind, (kind, scores)
        assert scores[kind] > 0.25, (kind, scores)
    # Divergence sweeps up (400 → 1600 Hz), vanishing down (1600 → 200 Hz): which band is loud early and late.
    low, high = (200.0, 700.0), (1000.0, 1700.0)
    for kind, rising in (("divergence", True), ("vanishing", False)):
        at = alarm_seconds(faulty_run)[kind]
        length = len(earcon(kind, sr)) / sr
        early = band_ratio(x, sr, at + 0.01, at + 0.08, low, high)
        late = band_ratio(x, sr, at + length - 0.12, at + length - 0.04, low, high)
        assert (early > 2 and late < 1 / 2) if rising else (early < 1 / 2 and late > 2), (kind, early, late)


def band_ratio(x: np.ndarray, sr: int, t0: float, t1: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Energy in band ``a`` over energy in band ``b`` between ``t0`` and ``t1`` seconds."""
    seg = x[int(t0 * sr):int(t1 * sr)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    f = np.fft.rfftfreq(len(seg), 1 / sr)
    return float(spec[(f >= a[0]) & (f < a[1])].sum() / spec[(f >= b[0]) & (f < b[1])].sum())


def test_voices_are_ducked_under_an_earcon(faulty_run: dict[str, Any], tmp_path: Path) -> None:
    x, sr = render(faulty_run["tsr"], tmp_path / "f.wav")
    quiet, _ = render(faulty_run["tsr"], tmp_path / "q.wav", "--config", str(no_alarms(tmp_path)))
    at = alarm_seconds(faulty_run)["plateau"]
    a, b = int((at + 0.02) * sr), int((at + 0.28) * sr)
    voices_before = np.sqrt(np.mean(quiet[a:b] ** 2))
    # The voices' partials (the quiet render's loudest bins away from the earcon's 330 Hz harmonics), with the
    # earcon playing: turned down to DUCK_GAIN (power 0.04), well under half.
    win = np.hanning(b - a)
    p_quiet, p_loud = (np.abs(np.fft.rfft(w[a:b] * win)) ** 2 for w in (quiet, x))
    f = np.fft.rfftfreq(b - a, 1 / sr)
    mask = np.ones(len(f), bool)
    for k in range(1, 8):
        mask &= np.abs(f - 330.0 * k) > 40.0
    top = np.argsort(np.where(mask, p_quiet, 0.0))[-20:]
    assert p_loud[top].sum() < 0.25 * p_quiet[top].sum()
    assert voices_before > 0.01


def no_alarms(tmp: Path) -> Path:
    f = tmp / "quiet.toml"
    f.write_text("[alarms]\nenabled = false\n[alarm]\nmin_interval_ms = 60000\n")
    return f


def test_speech_follows_each_earcon(faulty_run: dict[str, Any], tmp_path: Path) -> None:
    """Without voices (no mapping rules) and ticks, the render is the earcons alone; with --speak, speech fills the
    time after each earcon."""
    cfg = tmp_path / "nomap.toml"
    cfg.write_text("mappings = []\n[alarms.ticks]\nenabled = false\n")
    plain, sr = render(faulty_run["tsr"], tmp_path / "plain.wav", "--config", str(cfg))
    spoken, _ = render(faulty_run["tsr"], tmp_path / "spoken.wav", "--config", str(cfg), "--speak")
    for kind, at in alarm_seconds(faulty_run).items():
        a = int((at + len(earcon(kind, sr)) / sr + 0.15) * sr)
        b = a + int(0.15 * sr)
        e_plain, e_spoken = (float(np.sqrt(np.mean(w[a:b] ** 2))) for w in (plain, spoken))
        assert e_spoken > 0.02 and e_spoken > 20 * e_plain, (kind, e_plain, e_spoken)


def test_a_healthy_session_through_the_bridge_raises_none(tmp_path: Path) -> None:
    r = run_bridge(tmp_path, healthy("ok", steps=2000, seed=7), HEALTHY_DT, "healthy")
    assert r["osc"].of("/trainsound/alarm") == []
    assert [k for _, k, _ in r["osc"].of("/trainsound/tick")] == ["epoch", "epoch", "lr", "epoch", "epoch", "lr"]
    assert r["status"]["alarms"]["recent"] == []
    assert "alarms: none" in r["status_text"]
    assert len(r["osc"].of("/trainsound/value")) > 100  # it did hear the run


@pytest.mark.pyo
def test_a_pyo_patch_plays_each_earcon_at_its_time(faulty_run: dict[str, Any], tmp_path: Path) -> None:
    wav = tmp_path / "pyo.wav"
    p = subprocess.run([sys.executable, "-m", "trainsound.bridge", "render", str(faulty_run["tsr"]), "--wav", str(wav),
                        "--pyo-patch", "loss_sine", "--clock", "wall"],  # the recorded clock, as render() above
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    y, sr = sf.read(str(wav), dtype="float32")
    assert np.isfinite(y).all()
    x = y.sum(axis=1)
    kinds = [k for k in EXPECTED if k != "nan"]  # a NaN sounds the patch's own siren (on_nan)
    for kind in kinds:
        at = alarm_seconds(faulty_run)[kind]
        a, b = int((at - 0.05) * sr), int((at + 0.15) * sr)
        scores = {k: matched(x[a:b + len(earcon(k, sr))], earcon(k, sr)) for k in kinds}
        assert max(scores, key=scores.__getitem__) == kind and scores[kind] > 0.5, (kind, scores)


@pytest.mark.jack
def test_live_audio_plays_the_earcon_then_speech(jack_server: str, bridge_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The sine engine process (``--audio``, through a private jackd): the earcon, then the spoken label."""
    wav = tmp_path / "live.wav"
    b = bridge_proc(["--no-midi", "--audio", "--wav", str(wav), "--speak"])
    for s in range(100):
        b.send("/nn/live/step", s)
        b.send("/nn/live/grad_norm/fc1", 1.0 + 0.01 * (s % 3))
        time.sleep(0.01)
    b.send("/nn/live/step", 100)
    b.send("/nn/live/grad_norm/fc1", 100.0)
    time.sleep(3.0)
    code, err = b.stop()
    assert code == 0, err
    y, sr = sf.read(str(wav), dtype="float32")
    assert np.isfinite(y).all()
    x = y.sum(axis=1)
    tpl = earcon("exploding", sr)
    c = fftconvolve(x, tpl[::-1], mode="valid")
    at = int(np.argmax(c))
    assert matched(x[at:at + len(tpl)], tpl) > 0.5, (at / sr, len(x) / sr)
    assert at > 0.7 * sr, at / sr
    # Speech: broadband sound after the earcon where only the (ducked) fc1 voice would be.
    # (Without --speak only the sine voice is there: its 20 loudest bins hold all but a millionth.)
    after = x[at + len(tpl) + int(0.1 * sr):at + len(tpl) + int(1.0 * sr)]
    spec = np.abs(np.fft.rfft(after * np.hanning(len(after)))) ** 2
    f = np.fft.rfftfreq(len(after), 1 / sr)
    top = np.sort(spec[(f > 300) & (f < 3000)])[::-1]
    assert top[20:].sum() > 0.05 * top.sum()  # energy spread over many bins: speech, not one sine


def test_a_missing_tts_is_one_clear_line_and_the_earcons_alone(faulty_run: dict[str, Any], tmp_path: Path) -> None:
    import os

    env = {**os.environ, "PATH": str(tmp_path)}  # no espeak-ng on it
    wav = tmp_path / "f.wav"
    p = subprocess.run([sys.executable, "-m", "trainsound.bridge", "render", str(faulty_run["tsr"]), "--wav", str(wav),
                        "--clock", "wall", "--speak"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "espeak-ng" in ln]
    assert len(lines) == 1 and "not installed" in lines[0] and "earcons only" in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    x, sr = sf.read(str(wav), dtype="float32")
    at = alarm_seconds(faulty_run)["spike"]
    seg = x.sum(axis=1)[int((at - 0.05) * sr):int((at + 0.3) * sr)]
    assert matched(seg, earcon("spike", sr)) > 0.25
