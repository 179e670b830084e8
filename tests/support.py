"""Test helpers shared by the whole suite (importable as ``support``: pytest puts tests/ on the path)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

from trainsound.bridge.wire.osc import decode_message, encode_message

SF2 = "/usr/share/sounds/sf2/TimGM6mb.sf2"
ROOT = Path(__file__).resolve().parent.parent


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
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.client.get_ports(src):
                self.client.connect(src, self.port)
                return
            time.sleep(0.01)
        raise TimeoutError(f"JACK port {src} did not appear within {timeout} s")

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
        t0 = time.time()
        while not self.status()["outputs"].get(name, {}).get("ok"):
            if time.time() - t0 > timeout:
                raise TimeoutError(f"output {name} not ok after {timeout} s")
            time.sleep(0.05)
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
