"""Sound cards through PyAudio: ``trainsound devices`` and the live output stream.

PyAudio is imported only here and only when called. The stream runs in
PortAudio's **callback mode**: its blocking ``write()`` crashes or corrupts
audio on PortAudio 19.6's JACK path (see docs/sound.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OutputUnavailable, TrainsoundError
from .jackserver import quiet_jack

log = logging.getLogger(__name__)

#: Callbacks after start whose xruns count as start-up (JACK reports one while the client activates).
WARMUP_CALLBACKS = 20
#: ``render(frames) -> (frames, channels) float32`` (or those frames as little-endian float32 bytes, passed
#: through untouched: the fast path), called on PortAudio's thread.
RenderFn = Callable[[int], "np.ndarray | bytes"]


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    host_api: str
    channels: int
    default_rate: float
    is_default: bool


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C libraries' own stderr chatter (ALSA, JACK) while PortAudio probes devices."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as err:
        raise OutputUnavailable("live audio needs PyAudio: pip install 'trainsound[audio]'") from err
    return pyaudio


def open_portaudio() -> tuple[Any, Any]:
    """``(pyaudio module, PyAudio instance)``, quietly."""
    pyaudio = _pyaudio()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # probing must never spawn a JACK server
    with _quiet_stderr():
        pa = pyaudio.PyAudio()
    return pyaudio, pa


def output_devices(pa: Any) -> list[Device]:
    """Every device with output channels."""
    try:
        default = pa.get_default_output_device_info()["index"]
    except OSError:
        default = -1
    out = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info["maxOutputChannels"] <= 0:
            continue
        api = pa.get_host_api_info_by_index(info["hostApi"])["name"]
        out.append(Device(i, info["name"], api, int(info["maxOutputChannels"]), float(info["defaultSampleRate"]),
                          i == default))
    return out


def choose_device(devices: list[Device], want: str | int | None) -> Device:
    """By index, by name substring (case-insensitive; also matches the host API), or the default.

    With no choice: the system default, else a JACK device (a running JACK
    server is what a headless machine has), else the first device.

    >>> ds = [Device(0, "HDA Intel", "ALSA", 2, 48000.0, False), Device(3, "system", "JACK Audio Connection Kit", 2,
    ...       48000.0, False)]
    >>> choose_device(ds, "jack").index, choose_device(ds, "0").name, choose_device(ds, None).index
    (3, 'HDA Intel', 3)
    """
    if not devices:
        raise OutputUnavailable("no audio output device found (see 'trainsound devices')")
    if want is None or want == "":
        for d in devices:
            if d.is_default:
                return d
        for d in devices:
            if "JACK" in d.host_api:
                return d
        return devices[0]
    text = str(want).strip()
    if text.isdigit():
        for d in devices:
            if d.index == int(text):
                return d
        raise OutputUnavailable(f"no audio output device with index {text} (see 'trainsound devices')")
    low = text.lower()
    for d in devices:
        if low in d.name.lower() or low in d.host_api.lower():
            return d
    raise OutputUnavailable(f"no audio output device matching {text!r} (see 'trainsound devices')")


class LiveStream:
    """A PyAudio output stream in callback mode pulling blocks from ``render``; counts underruns."""

    def __init__(self, render: RenderFn, *, device: str | int | None, sample_rate: int, channels: int,
                 block: int) -> None:
        self.pyaudio, self.pa = open_portaudio()
        try:
            self.device = choose_device(output_devices(self.pa), device)
            self.channels = min(channels, self.device.channels)
            self.sample_rate = self._rate(sample_rate)
            self.block = block
            self.render = render
            self.underruns = 0
            self.startup_underruns = 0
            self.callbacks = 0
            self.warmup = WARMUP_CALLBACKS
            self.errors = 0
            self._lock = threading.Lock()
            self.stream = self.pa.open(format=self.pyaudio.paFloat32, channels=self.channels, rate=self.sample_rate,
                                       output=True, output_device_index=self.device.index, frames_per_buffer=block,
                                       stream_callback=self._callback, start=False)
        except OutputUnavailable:
            self.pa.terminate()
            raise
        except (OSError, ValueError) as err:
            self.pa.terminate()
            raise OutputUnavailable(f"cannot open audio device {device!r}: {err}") from err

    def _rate(self, wanted: int) -> int:
        try:
            ok = self.pa.is_format_supported(wanted, output_device=self.device.index, output_channels=self.channels,
                                             output_format=self.pyaudio.paFloat32)
        except ValueError:
            ok = False
        if ok:
            return wanted
        rate = int(self.device.default_rate)
        log.info("audio device %s does not take %d Hz; playing at %d Hz", self.device.name, wanted, rate)
        return rate

    def _callback(self, _in: bytes | None, frames: int, _time: Any, status: int) -> tuple[bytes, int]:
        self.callbacks += 1
        if status & self.pyaudio.paOutputUnderflow:
            if self.callbacks <= WARMUP_CALLBACKS:
                self.startup_underruns += 1
            else:
                self.underruns += 1
        try:
            x = self.render(frames)
        except Exception:  # never let an exception kill the audio thread: play silence, count it
            self.errors += 1
            if self.errors == 1:
                log.exception("audio render failed; playing silence")
            x = np.zeros((frames, self.channels), np.float32)
        if isinstance(x, bytes):  # already the frames PortAudio wants
            return x, self.pyaudio.paContinue
        if x.shape[1] != self.channels:
            x = x[:, : self.channels] if x.shape[1] > self.channels else np.repeat(x[:, :1], self.channels, axis=1)
        return np.ascontiguousarray(x, np.float32).tobytes(), self.pyaudio.paContinue

    def start(self) -> None:
        self.stream.start_stream()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.stop_stream()
        with contextlib.suppress(OSError):
            self.stream.close()
        self.pa.terminate()

    def describe(self) -> str:
        return f"{self.device.name} ({self.device.host_api}, {self.sample_rate} Hz, {self.block}-frame blocks)"


# -- trainsound devices -----------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    try:
        _, pa = open_portaudio()
    except OutputUnavailable as err:
        raise TrainsoundError(str(err)) from err
    try:
        devices = output_devices(pa)
    finally:
        pa.terminate()
    if not devices:
        print("no audio output devices (no sound card and no JACK server?)")
        return 0
    print(f"{len(devices)} audio output device(s) — choose with --audio-device NAME|INDEX:")
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:3d}: {d.name} [{d.host_api}] {d.channels} ch, {d.default_rate:.0f} Hz")
    return 0


def midi_ports(rtmidi: Any, api: int) -> tuple[list[str], list[str]] | str:
    """``(destinations, sources)`` of one MIDI API, or why it is unavailable.

    Destinations take MIDI (a synth's input: what ``--midi-port`` connects to); sources send it (a
    running bridge's ``trainsound:out`` is one: what a DAW reads). ALSA and JACK print their own chatter
    on stderr when their server is absent; it is silenced here (the reason is printed instead).
    """
    lists: list[list[str]] = []
    with _quiet_stderr():
        for kind in (rtmidi.MidiOut, rtmidi.MidiIn):
            try:
                probe = kind(api, name="trainsound-ports")
            except Exception as err:  # rtmidi raises SystemError when the API has no server
                return str(err) or type(err).__name__
            try:
                lists.append(list(probe.get_ports()))
            finally:
                probe.delete()
    return lists[0], lists[1]


def cmd_ports(args: argparse.Namespace) -> int:
    try:
        import rtmidi
    except ImportError as err:
        raise TrainsoundError("listing MIDI ports needs python-rtmidi: pip install 'trainsound[bridge]'") from err
    quiet_jack()
    for api in rtmidi.get_compiled_api():
        name = rtmidi.get_api_display_name(api)
        found = midi_ports(rtmidi, api)
        if isinstance(found, str):
            print(f"{name}: unavailable ({found})")
            continue
        dests, sources = found
        print(f"{name}: {len(dests)} port(s) to send to (--midi-port NAME), {len(sources)} port(s) sending MIDI")
        for i, p in enumerate(dests):
            print(f"  to   {i}: {p}")
        for i, p in enumerate(sources):
            print(f"  from {i}: {p}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``trainsound devices`` and ``trainsound ports`` (the machine's audio and MIDI outputs)."""
    subparsers.add_parser("ports", help="list MIDI output ports per MIDI API").set_defaults(func=cmd_ports)
    p = subparsers.add_parser("devices", help="list audio output devices (for --audio-device)",
                              description="List the sound cards PyAudio sees; * marks the default.")
    p.set_defaults(func=cmd_devices)
