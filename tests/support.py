"""Test helpers shared by the whole suite (importable as ``support``: pytest puts tests/ on the path)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

from trainsound.bridge.wire.osc import decode_message, encode_message

SF2 = "/usr/share/sounds/sf2/TimGM6mb.sf2"
ROOT = Path(__file__).resolve().parent.parent


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = "condition",
               every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something true, and return that; fail the test after ``timeout`` s
    (``what`` names what was awaited; a callable is asked at the failure, to show the state then).

    The suite's one polling helper: tests wait for what they assert, never for a fixed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what() if callable(what) else what} not met within {timeout:g} s")
        time.sleep(every)


class JackServer:
    """A private jackd (dummy backend): the one launcher of the tests and the benchmarks.

    ``realtime=True`` asks for SCHED_FIFO first and falls back to ``--no-realtime``: benchmarks measure
    the bridge, not the scheduler (a non-realtime jackd on a loaded 2-core VM misses its own deadlines,
    about one xrun per 10 s here when idle); tests keep ``--no-realtime``, which runs everywhere.
    """

    def __init__(self, prefix: str = "ts", rate: int = 48_000, period: int = 256, realtime: bool = False,
                 name: str | None = None) -> None:
        self.name = name or f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.rate, self.period, self.want_realtime = rate, period, realtime
        self.realtime = False
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1",
                        JACK_NO_AUDIO_RESERVATION="1")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Any = None
        """jackd's output: a file, since a pipe nobody reads would block it once full (closed by :meth:`stop`)."""

    def start(self, wait: bool = True) -> JackServer:
        """Start jackd (and wait until it serves, unless ``wait`` is False).

        Raises:
            RuntimeError: jackd is not installed or did not come up (its last words in the message).
        """
        if not shutil.which("jackd"):
            raise RuntimeError("jackd is not installed: run the README's test command, which installs jackd2")
        if self.log is None:
            self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop; a restart after kill appends)
        for rt in [True, False] if self.want_realtime else [False]:
            mode = ["-R", "-P", "70"] if rt else ["--no-realtime"]
            self.proc = subprocess.Popen(
                ["jackd", *mode, "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
                env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
            # A realtime jackd that may not have SCHED_FIFO can die just after it came up: give it a moment.
            if not wait or self.wait(settle=0.2 if rt else 0.0):
                self.realtime = rt
                return self
            self.kill()
        self.log.seek(0)
        said = self.log.read().decode(errors="replace")[-500:]
        self.stop()
        raise RuntimeError("jackd did not come up: " + said)

    def wait(self, timeout: float = 10.0, settle: float = 0.0) -> bool:
        """Whether the server serves within ``timeout`` s (``jack_wait``) and still runs ``settle`` s later."""
        ok = subprocess.run(["jack_wait", "-w", "-t", str(int(timeout))], env=self.env,
                            capture_output=True).returncode == 0
        time.sleep(settle)
        return ok and self.proc is not None and self.proc.poll() is None

    def use(self) -> None:
        """Make this server the one every JACK client of this process and its children finds."""
        os.environ.update(JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1", JACK_NO_AUDIO_RESERVATION="1")

    def kill(self) -> None:
        """SIGKILL, as a crash would (its slot in JACK's server registry stays until a clean stop)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None


def free_udp_port() -> int:
    """A port free for UDP *and* TCP: the bridge listens on both with the same number."""
    for _ in range(100):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port: int = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        return port
    raise RuntimeError("no port free for both UDP and TCP")


def dominant_hz(x: np.ndarray, sr: int) -> float:
    """FFT peak of the non-silent part of ``x``."""
    nz = np.flatnonzero(np.abs(x) > 1e-3)
    if nz.size == 0:
        return 0.0
    seg = x[nz[0] : nz[-1] + 1]
    seg = seg * np.hanning(len(seg))
    return float(np.fft.rfftfreq(len(seg), 1 / sr)[np.argmax(np.abs(np.fft.rfft(seg)))])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


class Recorder:
    """A JACK client input port that records whatever is connected to it."""

    def __init__(self, name: str = "recorder") -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.inports.register("in_1")
        self.chunks: list[np.ndarray] = []
        self.client.set_process_callback(lambda n: self.chunks.append(self.port.get_array().copy()))
        self.client.activate()
        self.sr: int = self.client.samplerate
        self._stopped = False

    def connect_when_present(self, src: str, timeout: float = 10.0) -> None:
        wait_until(lambda: self.client.get_ports(src), timeout, f"JACK port {src} appearing", every=0.01)
        self.client.connect(src, self.port)

    def stop(self) -> np.ndarray:
        if not self._stopped:
            self._stopped = True
            self.client.deactivate()
            self.client.close()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)


class MidiProbe:
    """A JACK MIDI input port (python-rtmidi) that timestamps what arrives."""

    def __init__(self, name: str = "probe") -> None:
        import rtmidi

        self.name = name
        self.midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name)
        self.midi_in.ignore_types(sysex=False, timing=False, active_sense=False)
        self.midi_in.open_virtual_port("in")
        self.messages: list[tuple[float, list[int]]] = []
        self._lock = threading.Lock()
        self.midi_in.set_callback(self._on)

    def _on(self, event: tuple[list[int], float], data: Any = None) -> None:
        with self._lock:
            self.messages.append((time.perf_counter(), event[0]))

    @property
    def port(self) -> str:
        return f"{self.name}:in"

    def wait_for(self, n: int, timeout: float = 5.0) -> list[list[int]]:
        t0 = time.time()
        while time.time() - t0 < timeout:
            with self._lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.005)
        with self._lock:
            return [m for _, m in self.messages]

    def close(self) -> None:
        self.midi_in.cancel_callback()
        self.midi_in.close_port()
        self.midi_in.delete()


class BridgeProc:
    """``trainsound bridge`` as a real subprocess on a free UDP port."""

    def __init__(self, args: list[str], port: int, env: dict[str, str] | None = None, ready_timeout: float = 20.0):
        self.port = port
        self.cmd = [sys.executable, "-m", "trainsound.bridge", "bridge", "--listen", f"127.0.0.1:{port}", *args]
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or dict(os.environ)
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stderr = ""
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise RuntimeError(f"bridge exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                self.sock.sendto(encode_message("/trainsound/ping"), ("127.0.0.1", self.port))
                data, _ = self.sock.recvfrom(65536)
                if decode_message(data)[0] == "/trainsound/pong":
                    return
            except (TimeoutError, ConnectionRefusedError):
                pass
        self.proc.kill()
        raise RuntimeError("bridge did not answer /trainsound/ping in time")

    def send(self, address: str, *args: Any) -> None:
        """One message built by python-osc: the bridge is driven by an OSC implementation not its own."""
        builder = OscMessageBuilder(address=address)
        for a in args:
            builder.add_arg(a)
        self.sock.sendto(builder.build().dgram, ("127.0.0.1", self.port))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def status(self) -> dict[str, Any]:
        """The full status, over TCP as ``trainsound status`` asks (UDP replies are bounded by the request)."""
        from trainsound.bridge.service.status import query_tcp

        st = query_tcp("127.0.0.1", self.port, 5.0)
        if st is not None:
            return st
        return self.status_udp()

    def status_udp(self, pad_to: int = 60_000) -> dict[str, Any]:
        """The status over UDP: the request carries a blob so that it is at least ``pad_to`` bytes
        (a UDP reply is never larger than its request)."""
        self.sock.sendto(encode_message("/trainsound/status", [b"\0" * pad_to]), ("127.0.0.1", self.port))
        t0 = time.time()
        while time.time() - t0 < 5:
            try:
                data, _ = self.sock.recvfrom(1 << 20)
            except TimeoutError:
                continue
            address, args = decode_message(data)
            if address == "/trainsound/status.reply":
                result: dict[str, Any] = json.loads(str(args[0]))
                return result
        raise TimeoutError("no status reply")

    def wait_output_ok(self, name: str, timeout: float = 10.0) -> None:
        """Wait until the status reports output ``name`` healthy (e.g. MIDI connected)."""
        wait_until(lambda: self.status()["outputs"].get(name, {}).get("ok"), timeout, f"output {name} ok", every=0.05)
        time.sleep(0.1)  # the port connection itself settles within a JACK cycle or two

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.stderr = err
        self.sock.close()
        return self.proc.returncode, err


def by_step(msgs: list[tuple[str, tuple[Any, ...]]], run: str) -> dict[int, dict[str, tuple[Any, ...]]]:
    """``{step: {"loss": args, "grad_norm/fc1": args, ...}}`` for one run (messages follow their step)."""
    steps: dict[int, dict[str, tuple[Any, ...]]] = {}
    current: dict[str, tuple[Any, ...]] = {}
    prefix = f"/nn/{run}/"
    for address, args in msgs:
        if not address.startswith(prefix):
            continue
        key = address[len(prefix) :]
        if key == "step":
            current = steps.setdefault(int(args[0]), {})
        current[key] = args
    return steps


def run_messages(mf: Any, run: str) -> list[tuple[float, Any]]:
    """``(seconds, message)`` of every channel message of ``run`` in a MIDI file, in time order: a run's voices
    are tracks of their own, named ``RUN VOICE RULE`` (docs/ableton.md)."""
    import mido

    tempo = next((m.tempo for t in mf.tracks for m in t if m.type == "set_tempo"), 500_000)
    out: list[tuple[float, Any]] = []
    for tr in mf.tracks:
        if tr.name != run and not tr.name.startswith(f"{run} "):
            continue
        tick = 0
        for m in tr:
            tick += m.time
            if not m.is_meta:
                out.append((mido.tick2second(tick, mf.ticks_per_beat, tempo), m))
    out.sort(key=lambda e: e[0])
    return out
