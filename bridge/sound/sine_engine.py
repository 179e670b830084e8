"""The live ``sine`` engine: a child process that owns the sound card, renders ahead and writes the WAV.

Why a process: PortAudio's callback needs the GIL every block (5.3 ms at 256
frames, 48 kHz), see :mod:`.engine`. The bridge's ``sine`` output only sends
coalesced parameter updates down the engine link; this process has nothing
else to do:

- the **main thread** receives batches from the pipe (waiting without the GIL)
  and hands them to the render thread;
- the **render thread** applies them between blocks and renders ahead into a
  small ring of ready-made blocks (``AHEAD_BLOCKS``), as bytes;
- **PortAudio's callback** only pops a block off the ring (no numpy, no lock),
  counts underruns, and passes the block on to
- the **WAV writer thread**, so the file holds exactly what was played (its
  header is rewritten every 0.5 s and on close; if the bridge dies, the pipe
  closes and this process still finishes the file).

Counters (callbacks, underruns, late blocks, frames written, …) live in shared
memory (:data:`COUNTERS`), so the bridge's ``health()`` reads them at once.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OutputUnavailable
from .alarms import TICK_KINDS
from .engine import child_signals, say_closed, serve_child
from .wav import MAX_BYTES as MAX_WAV_BYTES

log = logging.getLogger(__name__)

#: Shared counter slots (a ``multiprocessing.Array('q')`` written by the engine, read by the bridge).
COUNTERS = ("callbacks", "device_underruns", "startup_underruns", "late_blocks", "wav_frames", "steps", "alarms",
            "dropped_steps", "errors", "wav_errors", "wav_dropped_frames", "wav_failing")
C = {name: i for i, name in enumerate(COUNTERS)}
#: Blocks rendered ahead of the callback (6 × 256 frames = 32 ms at 48 kHz).
AHEAD_BLOCKS = 6
#: Blocks per render call (amortises the per-call overhead).
CHUNK_BLOCKS = 2
#: GIL switch interval in the engine: a thread wanting the GIL (the callback) gets it within this.
SWITCH_INTERVAL = 0.0005
#: Perone FIFO bound: older steps are dropped (counted) beyond this many seconds.
PERONE_FIFO_SECONDS = 2.0
#: Blocks the fade-out needs before the stream stops (the block that ramps to 0, then silence).
FADE_BLOCKS = 3


@dataclass(frozen=True)
class EngineSpec:
    """Everything the engine needs, picklable (sent once at spawn)."""

    mode: str
    device: str | int | None
    sample_rate: int
    channels: int
    block: int
    max_freq: float
    wav: str | None
    fmt: str
    max_wav_bytes: int = MAX_WAV_BYTES


class Engine:
    """Renders ahead into a ring; the PortAudio callback pops it (see the module docstring)."""

    def __init__(self, spec: EngineSpec, counters: Any) -> None:
        from .devices import LiveStream
        from .tuning import limit_blas_threads, tune_allocator
        from .voices import VoiceBank

        limit_blas_threads()
        tune_allocator()
        self.spec = spec
        self.counters = counters
        self.block = spec.block
        self.stream = LiveStream(self._pull, device=spec.device, sample_rate=spec.sample_rate, channels=spec.channels,
                                 block=spec.block)
        self.sr = self.stream.sample_rate
        self.channels = self.stream.channels
        self.bytes_per_block = self.block * self.channels * 4
        self._silence = bytes(self.bytes_per_block)
        self.wav: Any = None
        if spec.wav:
            from .wav import WavWriter

            try:
                self.wav = WavWriter(spec.wav, self.sr, channels=self.channels, fmt=spec.fmt,  # type: ignore[arg-type]
                                     max_bytes=spec.max_wav_bytes)
            except OSError as err:
                self.stream.close()
                raise OSError(f"{spec.wav}: cannot write WAV file: {err.strerror}") from err
        self.bank: Any = None
        self.perone: Any = None
        if spec.mode == "perone":
            from .seeds import PeroneSequencer

            self.perone = PeroneSequencer(self.sr)
            self._fifo: deque[np.ndarray] = deque()
            self._fifo_len = 0
        else:
            from .speech import Announcer

            self.bank = VoiceBank(self.sr, self.block, max_freq=spec.max_freq)
            self.announcer = Announcer(self.bank)
        self.ring: deque[bytes] = deque()
        self.inbox: deque[tuple[Any, ...]] = deque()
        self.wake = threading.Event()
        self.stopping = False
        self._resid = b""
        self._wq: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    # -- render thread ----------------------------------------------------------------
    def _render_loop(self) -> None:
        try:
            while not self.stopping:
                self._fill()
                self.wake.wait(0.02)
                self.wake.clear()
        except Exception:  # never die silently: the callback plays silence, the error is counted
            self.counters[C["errors"]] += 1
            log.exception("sine engine: render failed")

    def _fill(self) -> None:
        while len(self.ring) < AHEAD_BLOCKS and not self.stopping:
            self._apply_inbox()
            x = self._render(CHUNK_BLOCKS)
            data = np.ascontiguousarray(x, "<f4").tobytes()
            bpb = self.bytes_per_block
            for i in range(CHUNK_BLOCKS):
                self.ring.append(data[i * bpb:(i + 1) * bpb])

    def _render(self, blocks: int) -> np.ndarray:
        if self.bank is not None:
            x: np.ndarray = self.bank.render(blocks)
            return x if self.channels == 2 else x[:, :1]
        out = np.zeros((blocks * self.block, self.channels), np.float32)
        i, n = 0, len(out)
        while i < n and self._fifo:
            c = self._fifo[0]
            take = min(len(c), n - i)
            out[i:i + take] = c[:take, None]
            i += take
            if take == len(c):
                self._fifo.popleft()
            else:
                self._fifo[0] = c[take:]
            self._fifo_len -= take
        return out

    def _apply_inbox(self) -> None:
        while self.inbox:
            msg = self.inbox.popleft()
            if self.bank is not None:
                self._apply_voices(msg)
            else:
                self._apply_perone(msg)

    def _apply_voices(self, msg: tuple[Any, ...]) -> None:
        from .maps import pan_gains
        from .spectrum import decode_blob, spectrum_sound

        _, controls, voices, hz, gains = msg
        bank = self.bank
        for c in controls:
            if c[0] == "voice":  # ("voice", index, pan)
                while bank.n <= c[1]:
                    bank.add_voice(c[2])
            elif c[0] == "master":
                bank.set_master(c[1])
            elif c[0] == "alarm":  # ("alarm", kind, spoken label or "")
                at = self.announcer.announce(c[1])
                if c[1] not in TICK_KINDS:
                    self.counters[C["alarms"]] += 1
                if c[2]:  # espeak-ng takes tens of ms: not on the render thread
                    threading.Thread(target=self._say, args=(c[2], at), daemon=True).start()
            elif c[0] == "speech":  # ("speech", samples, at): from _say
                self.announcer.play_speech(c[1], c[2])
            elif c[0] == "spectrum":  # ("spectrum", blob, pan)
                x = spectrum_sound(decode_blob(c[1]), self.sr)
                if x.any():
                    bank.play(np.outer(x, pan_gains(c[2])).astype(np.float32))
            elif c[0] == "silence":
                bank.silence()
        if len(voices):
            bank.set_many(voices, hz, gains)

    def _say(self, label: str, at: int) -> None:
        x = self.announcer.speech.say(label)
        if x is not None:
            self.inbox.append(("batch", [("speech", x, at)], np.zeros(0, np.intp), np.zeros(0), np.zeros(0)))
            self.wake.set()

    def _apply_perone(self, msg: tuple[Any, ...]) -> None:
        from ..wire.protocol import Event

        for item in msg[1]:
            if item[0] == "finish":
                chunks = self.perone.finish()
            else:
                kind, run, name, values = item
                chunks = self.perone.apply(Event(0.0, run, kind, name, values, None, "", b""))
            for c in chunks:
                self._fifo.append(c)
                self._fifo_len += len(c)
                while self._fifo_len > PERONE_FIFO_SECONDS * self.sr and len(self._fifo) > 1:
                    self._fifo_len -= len(self._fifo.popleft())
                    self.counters[C["dropped_steps"]] += 1
        self.counters[C["steps"]] = self.perone.steps_done
        self.counters[C["alarms"]] = self.perone.alarms

    # -- PortAudio thread: pop a block, nothing else ------------------------------------------------
    def _pull(self, frames: int) -> bytes:
        st, cnt = self.stream, self.counters
        cnt[0], cnt[1], cnt[2] = st.callbacks, st.underruns, st.startup_underruns  # COUNTERS' first three
        want = frames * self.channels * 4
        if want == self.bytes_per_block and not self._resid:
            try:
                data = self.ring.popleft()
            except IndexError:
                data = self._late(want)
        else:
            data = self._pull_odd(want)
        self.wake.set()
        if self.wav is not None:
            self._wq.put(data)
        return data

    def _late(self, want: int) -> bytes:
        if self.stream.callbacks > self.stream.warmup:
            self.counters[C["late_blocks"]] += 1
        return bytes(want)

    def _pull_odd(self, want: int) -> bytes:
        """A callback asking for another size than the block: stitch ring blocks (rare)."""
        buf = self._resid
        while len(buf) < want:
            try:
                buf += self.ring.popleft()
            except IndexError:
                buf += self._late(want - len(buf))
        self._resid = buf[want:]
        return buf[:want]

    # -- WAV writer thread ------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            data = self._wq.get()
            if data is None:
                return
            try:
                self.wav.write(np.frombuffer(data, "<f4").reshape(-1, self.channels))
                self.counters[C["wav_frames"]] = self.wav.total_frames
                # Disk errors are counted by the writer (the file stays aligned); the bridge shows them.
                self.counters[C["wav_errors"]] = self.wav.errors
                self.counters[C["wav_dropped_frames"]] = self.wav.dropped_frames
                self.counters[C["wav_failing"]] = self.wav.error is not None
            except (OSError, ValueError) as err:
                log.error("WAV %s: write failed, recording stopped: %s", self.spec.wav, err)
                self.wav = None
                return

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._fill()
        targets: list[tuple[Callable[[], None], str]] = [(self._render_loop, "render")]
        if self.wav is not None:
            targets.append((self._write_loop, "wav"))
        for fn, name in targets:
            t = threading.Thread(target=fn, name=f"trainsound-sine-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.stream.start()

    def close(self) -> None:
        """Fade out (or play the last perone step), let it play, stop the stream, finish the WAV."""
        if self.bank is not None:
            self.inbox.append(("batch", [("silence",)], np.zeros(0, np.intp), np.zeros(0), np.zeros(0)))
            wait = (AHEAD_BLOCKS + CHUNK_BLOCKS + FADE_BLOCKS) * self.block / self.sr
        else:
            self.inbox.append(("perone", [("finish",)]))
            self.wake.set()
            threading.Event().wait(2 * self.block / self.sr)
            wait = (self._fifo_len + (AHEAD_BLOCKS + CHUNK_BLOCKS) * self.block) / self.sr
        self.wake.set()
        threading.Event().wait(min(wait, PERONE_FIFO_SECONDS + 0.2))
        self.stopping = True
        self.wake.set()
        self.stream.close()
        for t in self._threads:
            if t.name.endswith("render"):
                t.join(2.0)
        self._wq.put(None)  # the writer stores what was played, then stops
        for t in self._threads:
            if t.name.endswith("wav"):
                t.join(5.0)
        if self.wav is not None:
            self.wav.close()
            self.counters[C["wav_frames"]] = self.wav.total_frames
        self.counters[C["callbacks"]] = self.stream.callbacks


def engine_main(conn: Any, spec: EngineSpec, counters: Any) -> None:
    """Entry point of the engine process (spawned by :class:`.engine.EngineLink`)."""
    term = child_signals()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        eng = Engine(spec, counters)
    except (OutputUnavailable, OSError) as err:
        conn.send(("error", str(err)))
        return
    except Exception as err:  # an unexpected failure still reaches the bridge as one line
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    eng.start()

    def handle(msg: tuple[Any, ...]) -> None:
        eng.inbox.append(msg)
        eng.wake.set()

    serve_child(conn, ("ready", eng.sr, eng.channels, eng.stream.device.name, eng.stream.describe()), handle,
                term=term)
    eng.close()
    say_closed(conn)
