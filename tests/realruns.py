"""Real training runs through a real bridge, and what their sound carries (issue 27): shared by the tests and
by ``docs/img/make_sound_figures.py``.

Three small, real trainings on learnable synthetic tasks (the loss falls): a GPT-2 in the Hugging Face
Trainer, an MLP in Lightning, a plain PyTorch loop under ``trainsound.watch`` (with a tenfold gradient window:
its loss is scaled by 10 for a few steps, so every gradient is 10× while the reported loss is not). Each sends
to a ``trainsound bridge --record FILE --osc-out`` process; the bridge's mapped values come back over OSC.
The recording is then rendered exactly as ``trainsound render`` does (replay on the step clock into the sine
output), with a tap on the same pipeline for the engine's per-step group values.
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainsound.bridge.config import default
from trainsound.bridge.mapped import Mapped
from trainsound.bridge.mapping.focus import REGION_SEMITONES, REGIONS, bed_unit
from trainsound.bridge.outputs.base import BaseOutput
from trainsound.bridge.outputs.sine import SineOut
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.replay.loop import replay
from trainsound.bridge.replay.render import RENDER_TAIL, audio_clock
from trainsound.bridge.sound.maps import DEFAULT_FMIN, DEFAULT_OCTAVES
from trainsound.bridge.wire.osc import decode_message
from trainsound.bridge.wire.protocol import Event

STEPS_PER_SECOND = 4.0
FAULT = (150, 175)  # the torch loop's steps with a tenfold gradient
SEMITONES = 12.0 * DEFAULT_OCTAVES


@dataclass
class Run:
    """One real run: the bridge's mapped loss values, the recording and (after :func:`render`) its sound."""

    name: str
    record: Path
    loss: list[tuple[float, float]] = field(default_factory=list)
    """``(raw, norm)`` of every loss value the bridge mapped, in order (from its OSC output)."""
    accepted: int = 0


# -- the trainings ------------------------------------------------------------------------------------------
def train_gpt2(port: int, steps: int = 120) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from trainsound.transformers import Sonify

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 500, (16, 16), generator=g)  # 16 sequences to learn by heart: the loss falls tenfold
    ds = [{"input_ids": row, "labels": row} for row in ids.repeat(8, 1)]
    model = GPT2LMHeadModel(GPT2Config(vocab_size=500, n_positions=64, n_embd=64, n_layer=4, n_head=4))
    args = TrainingArguments(output_dir=str(Path("/tmp") / f"ts-gpt2-{port}"), use_cpu=True, report_to=[],
                             save_strategy="no", max_steps=steps, per_device_train_batch_size=8,
                             learning_rate=4e-3, warmup_steps=10, logging_steps=30, disable_tqdm=True, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init config's token ids, not under test
        Trainer(model=model, args=args, train_dataset=ds, callbacks=[Sonify(run="gpt2", port=port)]).train()


def train_lightning(port: int, steps: int = 300) -> None:
    import lightning.pytorch as pl
    import torch
    from torch import nn

    from trainsound.lightning import Sonify

    torch.manual_seed(1)
    x = torch.randn(2048, 16)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4] > 0.5).long()  # three classes, learnable

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))

        def training_step(self, batch: Any, _: int) -> Any:
            xb, yb = batch
            loss = nn.functional.cross_entropy(self.net(xb), yb)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[Sonify(run="mlp", port=port)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's own advice (num_workers, litlogger) is not under test
        trainer.fit(MLP(), dl)


def train_torch(port: int, steps: int = 240) -> None:
    import torch
    from torch import nn

    import trainsound

    torch.manual_seed(2)
    x = torch.randn(1024, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long()

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc1 = nn.Linear(8 * 16, 32)
            self.fc2 = nn.Linear(32, 2)

        def forward(self, xb: Any) -> Any:
            h = torch.relu(self.conv1(xb))
            h = torch.max_pool2d(torch.relu(self.conv2(h)), 2)
            return self.fc2(torch.relu(self.fc1(h.flatten(1))))

    model = CNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    w = trainsound.watch(model, run="cnn", port=port)
    g = torch.Generator().manual_seed(2)
    for s in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        scale = 10.0 if FAULT[0] <= s < FAULT[1] else 1.0
        (loss * scale).backward()
        total = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None))
        trainsound.log(loss=loss.detach(), grad_norm=float(total))  # the loss as it is; the global norm
        opt.step()
    w.close()


TRAININGS = {"gpt2": train_gpt2, "mlp": train_lightning, "cnn": train_torch}


# -- the bridge ---------------------------------------------------------------------------------------------
class OscTap:
    """Collects ``/trainsound/value`` messages of the bridge's OSC output."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.values: list[tuple[Any, ...]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            address, args = decode_message(data)
            if address == "/trainsound/value":
                self.values.append(tuple(args))

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        self.sock.close()


def record_run(name: str, folder: Path) -> Run:
    """Train ``name`` (a key of :data:`TRAININGS`) against a real bridge; the run's recording and mapped loss."""
    from support import BridgeProc, free_udp_port

    rec = folder / f"{name}.tsr"
    tap = OscTap()
    b = BridgeProc(["--no-midi", "--record", str(rec), "--osc-out", f"127.0.0.1:{tap.port}"], free_udp_port())
    run = Run(name, rec)
    try:
        TRAININGS[name](b.port)
        time.sleep(0.3)
        run.accepted = b.status()["accepted"]
    finally:
        rc, err = b.stop()
        time.sleep(0.1)
        tap.close()
    assert rc == 0, err
    # (run, name, voice, norm, raw, kind, rule)
    run.loss = [(float(v[4]), float(v[3])) for v in tap.values if v[5] == "loss" and v[0] == name]
    return run


# -- the render -----------------------------------------------------------------------------------------------
class Tap(BaseOutput):
    """Keeps every mapped value the render's pipeline produces (the engine's group values per step)."""

    name = "tap"

    def __init__(self) -> None:
        super().__init__()
        self.mapped: list[tuple[int, Mapped]] = []
        self.step = -1

    def _handle(self, event: Event | None, mapped: Sequence[Mapped]) -> None:
        if event is not None and event.kind == "step" and event.values:
            self.step = int(event.values[0])
        self.mapped.extend((self.step, m) for m in mapped)

    def _close(self) -> None:
        pass


@dataclass
class Sound:
    """A rendered run: the WAV (mono), its rate, audio time of each step, the engine's group values per step."""

    x: np.ndarray
    sr: int
    step_times: dict[int, float]
    groups: dict[str, dict[int, float]]
    """group name → {step: the group's value the engine mapped in that step}."""
    index: dict[str, int]
    count: int
    globals_: dict[int, float]
    wav: Path


def render(run: Run, wav: Path, preset: str = "continuous") -> Sound:
    """Render ``run``'s recording as ``trainsound render --steps-per-second 4`` does, with a tap."""
    import soundfile as sf

    cfg = default()
    clock, _ = audio_clock(run.record, None, STEPS_PER_SECOND, preset)
    out = SineOut(cfg, wav=wav, preset=preset, keep_tracks=True)
    tap = Tap()
    replay(run.record, Pipeline(cfg, [out, tap]), realtime=False, clock=clock, tail=RENDER_TAIL)
    x, sr = sf.read(str(wav), dtype="float64")
    groups: dict[str, dict[int, float]] = {}
    index: dict[str, int] = {}
    count = 0
    globals_: dict[int, float] = {}
    for step, m in tap.mapped:
        if m.rule_name == "grad_norm_notes" and m.groups:
            count = max(count, m.groups)
            groups.setdefault(m.stream[1], {})[step] = m.value
            index[m.stream[1]] = m.voice
        elif m.rule_name == "metric_grad_norm":
            globals_[step] = m.value
    steps = {}
    for t, s in out.step_times:
        steps.setdefault(s, t)
    return Sound(x.mean(axis=1), sr, steps, groups, index, count, globals_, wav)


def peak_semitone(x: np.ndarray, sr: int, t0: float, t1: float, lo: float, hi: float) -> float:
    """The strongest frequency between ``lo`` and ``hi`` (semitones above fmin) in ``x[t0:t1]``, in semitones."""
    a, b = int(t0 * sr), int(t1 * sr)
    seg = x[a:b] * np.hanning(b - a)
    n = 1 << 17
    spec = np.abs(np.fft.rfft(seg, n))
    f = np.fft.rfftfreq(n, 1 / sr)
    flo, fhi = DEFAULT_FMIN * 2 ** (lo / 12), DEFAULT_FMIN * 2 ** (hi / 12)
    band = np.flatnonzero((f >= flo) & (f <= fhi))
    k = band[np.argmax(spec[band])]
    if 0 < k < len(spec) - 1:
        p, q, r = np.log(spec[k - 1 : k + 2] + 1e-30)
        d = 0.5 * (p - r) / (p - 2 * q + r) if p - 2 * q + r != 0 else 0.0
        hz = f[k] + d * (f[1] - f[0])
    else:
        hz = f[k]
    return float(12 * np.log2(hz / DEFAULT_FMIN))


def window(sound: Sound, step: int) -> tuple[float, float]:
    """The audio span of ``step``'s steady part (after the glide into it)."""
    t = sound.step_times[step]
    return t + 0.04, t + 1.0 / STEPS_PER_SECOND - 0.01


def bed_track(sound: Sound, group: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """``(steps, truth, semitones)``: a group's value per step and the pitch recovered from its bed band."""
    g = sound.index[group]
    lo, hi = (bed_unit(n, g, sound.count) * SEMITONES for n in (0.0, 1.0))
    steps = [s for s in sorted(sound.groups[group]) if s in sound.step_times and s + 1 in sound.step_times]
    truth = np.array([sound.groups[group][s] for s in steps])
    st = np.array([peak_semitone(sound.x, sound.sr, *window(sound, s), lo - 0.05, hi + 0.05) for s in steps])
    return steps, truth, st


def region_track(sound: Sound, region: str, steps: Sequence[int]) -> np.ndarray:
    """The pitch (semitones above fmin) in one of the focus regions at each of ``steps``."""
    lo, hi = (REGIONS[region][i] * SEMITONES / REGION_SEMITONES for i in (0, 1))
    return np.array([peak_semitone(sound.x, sound.sr, *window(sound, s), lo - 0.05, hi + 0.05) for s in steps])


def loud_voices(sound: Sound, step: int, below_db: float = 10.0) -> int:
    """Sinusoidal peaks within ``below_db`` of the loudest in ``step``'s span: the voices in front."""
    a, b = (int(t * sound.sr) for t in window(sound, step))
    seg = sound.x[a:b] * np.hanning(b - a)
    spec = np.abs(np.fft.rfft(seg, 1 << 16))
    db = 20 * np.log10(spec + 1e-12)
    peaks = np.flatnonzero((db[1:-1] > db[:-2]) & (db[1:-1] >= db[2:])) + 1
    return int(np.sum(db[peaks] >= db.max() - below_db))
