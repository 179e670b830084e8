"""OSC out, received by a real OSC peer (liblo's ``oscdump``), in-process and through the bridge."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from support import wait_until

from trainsound.bridge.config import Table, default
from trainsound.bridge.errors import ConfigError, OutputUnavailable
from trainsound.bridge.outputs.osc import OscOut, OscOutOptions, section
from trainsound.bridge.pipeline import Pipeline
from trainsound.bridge.service.status import query
from trainsound.bridge.wire.osc import encode_message, pad


class OscDump:
    """``oscdump -L PORT`` with its lines collected by a thread."""

    def __init__(self, port: int) -> None:
        if not shutil.which("oscdump"):
            pytest.fail("oscdump is not installed: run the README's test command (installs liblo-tools)")
        self.proc = subprocess.Popen(["oscdump", "-L", str(port)], stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, needle: str, timeout: float = 5.0) -> list[str]:
        hits: list[str] = wait_until(lambda: [ln for ln in self.lines if needle in ln], timeout,
                                     lambda: f"{needle!r} reaching oscdump (got {self.lines[-5:]})", every=0.01)
        return hits

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        self._t.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def oscdump(udp_port: int) -> Iterator[OscDump]:
    d = OscDump(udp_port)
    time.sleep(0.3)  # liblo binds before printing anything; give it a moment
    yield d
    d.close()


def body(line: str) -> str:
    """Drop oscdump's leading timetag column."""
    return line.split(" ", 1)[1]


def test_values_alarms_steps_spectra_reach_a_real_osc_peer(oscdump: OscDump, udp_port: int) -> None:
    cfg = default()
    out = OscOut(cfg, target=("127.0.0.1", udp_port))
    pipe = Pipeline(cfg, [out])
    spectrum = np.array([1.0, 0.5], "<f4").tobytes()
    msgs = [
        ("/nn/mnist/grad_norm/fc1", [1.0]),
        ("/nn/mnist/step", [120, 3]),
        ("/nn/mnist/activation_spectrum/conv1", [spectrum]),
        ("/nn/mnist/grad_norm/fc2", [math.nan]),
    ]
    for i, (address, args) in enumerate(msgs):
        pipe.feed_message(1000.0 + i, encode_message(address, args))
    pipe.close()
    # Default rule grad_norm_notes: log scale 1e-4..1e2, so 1.0 is 4/6 of the way up.
    value = oscdump.wait_for("/trainsound/value")[0]
    assert body(value) == '/trainsound/value ssiffss "mnist" "fc1" 0 0.666667 1.000000 "grad_norm" "grad_norm_notes"'
    assert body(oscdump.wait_for("/trainsound/step")[0]) == '/trainsound/step sii "mnist" 120 3'
    assert body(oscdump.wait_for("/trainsound/alarm")[0]) == '/trainsound/alarm sssi "mnist" "fc2" "nan" 120'
    assert body(oscdump.wait_for("/trainsound/spectrum")[0]).startswith('/trainsound/spectrum ssb "mnist" "conv1" [8b')
    h = out.health()
    assert h == {"ok": True, "target": f"127.0.0.1:{udp_port}", "sent": 4, "send_errors": 0, "last_error": ""}


def test_bridge_forwards_over_osc(oscdump: OscDump, udp_port: int, bridge_proc) -> None:
    b = bridge_proc(["--no-midi", "--osc-out", f"127.0.0.1:{udp_port}"])
    b.send("/nn/run1/grad_norm/layer1", 0.01)
    b.send("/nn/run1/grad_norm/layer1", float("inf"))
    value = body(oscdump.wait_for("/trainsound/value")[0])
    assert value == '/trainsound/value ssiffss "run1" "layer1" 0 0.333333 0.010000 "grad_norm" "grad_norm_notes"'
    assert body(oscdump.wait_for("/trainsound/alarm")[0]) == '/trainsound/alarm sssi "run1" "layer1" "nan" -1'
    code, err = b.stop()
    assert code == 0, err


def test_send_errors_are_counted_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    # Broadcast without SO_BROADCAST: the kernel refuses every send (EACCES), a real failing peer.
    out = OscOut(default(), target=("255.255.255.255", 57120))
    pipe = Pipeline(default(), [out])
    try:
        for i in range(5):
            pipe.feed_message(float(i), encode_message(f"/nn/r/grad_norm/layer{i}", [1.0]))
        h = out.health()
        assert h["sent"] == 0 and h["send_errors"] == 5 and not h["ok"]
        assert "PermissionError" in h["last_error"]
        # Rate-limited: the 1st, 2nd and 4th failure are logged, not every one.
        assert len([r for r in caplog.records if "send failed" in r.getMessage()]) == 3
    finally:
        pipe.close()


def test_unresolvable_host_is_one_clear_error() -> None:
    with pytest.raises(OutputUnavailable, match=r"OSC out target no-such-host\.invalid:57120 does not resolve"):
        OscOut(default(), target=("no-such-host.invalid", 57120))


def test_osc_out_section() -> None:
    opts = section(Table({"target": "10.0.0.2:9000", "prefix": "/ts", "spectra": False}, "osc_out"))
    assert opts == OscOutOptions(target=("10.0.0.2", 9000), prefix="/ts", spectra=False)
    with pytest.raises(ConfigError, match=r"osc_out.prefix must be an OSC address like /trainsound, got 'ts'"):
        section(Table({"prefix": "ts"}, "osc_out"))
    with pytest.raises(ConfigError, match=r"osc_out.port is not a known key"):
        section(Table({"port": 1}, "osc_out"))


def test_wide_numbers_are_forwarded_through_the_bridge_not_counted_as_errors(
    oscdump: OscDump, udp_port: int, bridge_proc
) -> None:
    """Issue 16 #11: an int64 step and float64 values beyond float32 reach the peer with their value
    (``h``/``d``), and the OSC output counts no error (before: the step was lost as an output error and
    1e300 arrived as inf)."""
    b = bridge_proc(["--no-midi", "--osc-out", f"127.0.0.1:{udp_port}"])
    b.send_raw(pad(b"/nn/r/step") + pad(b",h") + struct.pack(">q", 2**31 + 5))
    b.send_raw(pad(b"/nn/r/loss") + pad(b",d") + struct.pack(">d", 1e300))
    b.send_raw(pad(b"/nn/r/grad_norm/fc1") + pad(b",d") + struct.pack(">d", 1e39))
    b.send_raw(pad(b"/nn/r/step") + pad(b",i") + struct.pack(">i", 7))
    assert body(oscdump.wait_for("/trainsound/step sh")[0]) == '/trainsound/step shi "r" 2147483653 -1'
    assert body(oscdump.wait_for("/trainsound/step si")[0]) == '/trainsound/step sii "r" 7 -1'
    # oscdump prints a double with %f: the raw value is the 6th word.
    loss = body(oscdump.wait_for('"loss_brightness"')[0]).split()
    assert loss[:5] == ["/trainsound/value", "ssifdss", '"r"', '""', "0"] and float(loss[6]) == 1e300
    grad = body(oscdump.wait_for('"grad_norm_notes"')[0]).split()
    assert grad[:6] == ["/trainsound/value", "ssifdss", '"r"', '"fc1"', "0", "1.000000"] and float(grad[6]) == 1e39
    st = query("127.0.0.1", b.port)
    assert st["output_errors"] == {}
    assert st["outputs"]["osc"]["sent"] == 4 and st["outputs"]["osc"]["send_errors"] == 0
    code, err = b.stop()
    assert code == 0 and "failed" not in err, err
