"""The systemd units verify and are hardened; the daemon speaks the notify protocol to a real AF_UNIX socket."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import unitexpand
from support import free_udp_port, wait_until

from trainsound.bridge.errors import TrainsoundError
from trainsound.bridge.service.sdnotify import Notifier
from trainsound.bridge.service.status import query
from trainsound.bridge.wire.osc import encode_message
from trainsound.bridge.wire.session import iter_messages

ROOT = Path(__file__).resolve().parents[3]
UNITS = ROOT / "systemd"
MAX_EXPOSURE = 2.0


def _analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: apt-get install -y systemd")
    return exe


def _fake_home(tmp_path: Path) -> dict[str, str]:
    """A HOME whose ~/.local/bin/trainsound is this venv's, as docs/service.md installs it."""
    home = tmp_path / "home"
    (home / ".local/bin").mkdir(parents=True)
    (home / ".local/bin/trainsound").symlink_to(Path(sys.executable).parent / "trainsound")
    run = tmp_path / "run"
    run.mkdir()
    return dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(run))


@pytest.mark.parametrize(
    ("unit", "user"), [("trainsound-bridge.service", True), ("trainsound-bridge-system.service", False)]
)
def test_unit_verifies(unit: str, user: bool, tmp_path: Path) -> None:
    cmd = [_analyze(), *(["--user"] if user else []), "verify", str(UNITS / unit)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_fake_home(tmp_path), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == ""


@pytest.mark.parametrize("unit", ["trainsound-bridge.service", "trainsound-bridge-system.service"])
def test_unit_exposure_is_at_most_2(unit: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [_analyze(), "security", "--offline=yes", str(UNITS / unit)],
        capture_output=True,
        text=True,
        env=_fake_home(tmp_path),
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout


# -- the user unit's command line after systemd's expansion (issue 16 #21) -----------------------
DOCS = ROOT / "docs" / "service.md"


def _documented_env_line() -> str:
    """The ``TRAINSOUND_ARGS=…`` line docs/service.md tells users to put in their environment file."""
    m = re.search(r"`(TRAINSOUND_ARGS=[^`]+)`", DOCS.read_text())
    assert m, "docs/service.md no longer shows a TRAINSOUND_ARGS line"
    return m.group(1)


def _start_user_unit(tmp_path: Path, env_line: str) -> tuple[subprocess.Popen[str], Path, int]:
    """Write ``env_line`` to the environment file, expand the user unit as systemd would, start it."""
    env = _fake_home(tmp_path)
    home = Path(env["HOME"])
    (home / ".config/trainsound").mkdir(parents=True)
    (home / ".local/share/trainsound").mkdir(parents=True)  # docs/service.md's mkdir
    port = free_udp_port()
    # --listen/--no-midi keep the test off the real port and JACK; they go where a user's flags go.
    (home / ".config/trainsound/bridge.env").write_text(f"{env_line} --listen 127.0.0.1:{port} --no-midi\n")
    unit = unitexpand.expand(UNITS / "trainsound-bridge.service", str(home), "tester", env["XDG_RUNTIME_DIR"], env)
    assert unit.argv[:2] == [str(home / ".local/bin/trainsound"), "bridge"]
    assert unit.cwd == str(home / ".local/share/trainsound")
    proc = subprocess.Popen(unit.argv, cwd=unit.cwd, env=unit.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, home, port


def test_user_unit_documented_args_record_under_the_home_after_systemd_expansion(tmp_path: Path) -> None:
    """Before: the documented ``--record %h/…`` reached the bridge literally and wrote ``~/%h/…`` (a
    crash loop under ProtectHome=read-only); now the documented line records where it says."""
    env_line = _documented_env_line()
    proc, home, port = _start_user_unit(tmp_path, env_line)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                query("127.0.0.1", port, timeout=0.5)
                break
            except TrainsoundError:
                assert time.monotonic() < deadline, "the unit's command line never answered"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(encode_message("/nn/unit/loss", [0.5]), ("127.0.0.1", port))
        while query("127.0.0.1", port)["accepted"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    want = Path(env_line.split("--record ", 1)[1].split()[0].replace("~", str(home), 1))
    assert want.parent == home / ".local/share/trainsound"
    recordings = sorted(want.parent.glob(want.stem + "*" + want.suffix))  # a restart may number the name
    assert recordings, f"no recording in {want.parent}: {list(want.parent.iterdir())}"
    assert [(a, v) for _, a, v in iter_messages(recordings[0])] == [("/nn/unit/loss", (0.5,))]
    assert not [p for p in home.rglob("*") if "%" in p.name or p.name == "~"]


def test_a_specifier_in_the_environment_file_is_one_line_not_a_folder_nor_a_restart_loop(tmp_path: Path) -> None:
    proc, home, _ = _start_user_unit(tmp_path, "TRAINSOUND_ARGS=--record %h/.local/share/trainsound/s.tsr")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip() == ("trainsound: error: --record '%h/.local/share/trainsound/s.tsr': %h is a systemd "
                           "specifier, which an environment file does not expand; write ~/… instead")
    assert not [p for p in home.rglob("*") if "%" in p.name]
    for unit in ("trainsound-bridge.service", "trainsound-bridge-system.service"):
        assert ("RestartPreventExitStatus", "2") in unitexpand.read_service(UNITS / unit), unit


def test_documentation_links_point_to_what_the_install_steps_install() -> None:
    """Every ``Documentation=`` is a web address or a file the documented install commands put there."""
    installed = set()
    for doc in (DOCS, ROOT / "README.md"):
        for src, dest in re.findall(r"install -D -m 644 (docs/\S+) (\S+)", doc.read_text()):
            assert (ROOT / src).is_file(), src
            installed.add(dest.replace("~", "%h", 1))
    for unit in ("trainsound-bridge.service", "trainsound-bridge-system.service"):
        links = re.findall(r"^Documentation=(.+)$", (UNITS / unit).read_text(), re.M)
        assert links, unit
        for link in " ".join(links).split():
            assert link.startswith(("https://", "http://")) or link.removeprefix("file://") in installed, (unit, link)


def test_units_are_notify_with_watchdog_and_restart() -> None:
    for unit in ("trainsound-bridge.service", "trainsound-bridge-system.service"):
        text = (UNITS / unit).read_text()
        for line in ("Type=notify", "Restart=on-failure", "WatchdogSec=30", "ExecReload=kill -HUP $MAINPID"):
            assert line in text, f"{unit}: {line}"
    assert "--config /etc/trainsound/bridge.toml" in (UNITS / "trainsound-bridge-system.service").read_text()


def test_units_cap_memory_above_what_the_bridge_bounds_itself() -> None:
    """Issue 16, item 8: a backstop under the bridge's own byte bounds (schedule queue, recording buffer)."""
    from trainsound.bridge.outputs.record import MAX_PENDING_BYTES
    from trainsound.bridge.pipeline import SCHEDULE_MAX_BYTES

    for unit in ("trainsound-bridge.service", "trainsound-bridge-system.service"):
        lines = dict(
            line.split("=", 1) for line in (UNITS / unit).read_text().splitlines() if line.startswith("Memory")
        )
        assert lines["MemoryMax"] == "1G" and lines["MemoryHigh"] == "768M", unit
        assert SCHEDULE_MAX_BYTES + MAX_PENDING_BYTES < (768 << 20) // 4


# -- sd_notify ---------------------------------------------------------------------------------
class FakeSystemd:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, tmp_path: Path, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"trainsound-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp_path / "notify.sock")
            self.sock.bind(path)
            self.env = path
        self.sock.settimeout(0.2)
        self.got: list[str] = []

    def wait_for(self, needle: str, timeout: float = 15.0) -> list[str]:
        def check() -> bool:
            if any(needle in m for m in self.got):
                return True
            with contextlib.suppress(TimeoutError):
                self.got.append(self.sock.recv(4096).decode())
            return False

        wait_until(check, timeout, lambda: f"{needle!r} from the bridge (got {self.got})", every=0.0)
        return self.got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_systemd(tmp_path: Path) -> Iterator[Any]:
    made: list[FakeSystemd] = []

    def make(abstract: bool = False) -> FakeSystemd:
        made.append(FakeSystemd(tmp_path, abstract))
        return made[-1]

    yield make
    for sd in made:
        sd.close()


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_sends_datagrams(fake_systemd: Any, abstract: bool) -> None:
    sd = fake_systemd(abstract)
    n = Notifier({"NOTIFY_SOCKET": sd.env, "WATCHDOG_USEC": "2000000"})
    assert n.enabled and n.watchdog_interval == 1.0
    assert n.ready("listening")
    assert n.watchdog(100.0) and not n.watchdog(100.5) and n.watchdog(101.0)
    n.stopping()
    n.close()
    sd.wait_for("STOPPING=1")
    assert sd.got == ["READY=1\nSTATUS=listening", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]


def test_watchdog_for_another_pid_is_ignored() -> None:
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval is None


def test_missing_manager_socket_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert not n.notify("READY=1") and not n.notify("STATUS=x")
    n.close()
    assert sum("cannot notify systemd" in r.message for r in caplog.records) == 1


def test_bridge_notifies_ready_watchdog_and_stopping(bridge_proc: Any, fake_systemd: Any) -> None:
    sd = fake_systemd()
    env = dict(os.environ, NOTIFY_SOCKET=sd.env, WATCHDOG_USEC="400000")
    b = bridge_proc(["--no-midi"], env=env)
    got = sd.wait_for("READY=1")
    ready = next(m for m in got if "READY=1" in m)
    assert f"STATUS=listening on 127.0.0.1:{b.port}" in ready
    sd.wait_for("WATCHDOG=1")
    b.proc.send_signal(signal.SIGHUP)
    sd.wait_for("RELOADING=1")
    rc, _ = b.stop(signal.SIGTERM)
    assert rc == 0
    sd.wait_for("STOPPING=1")


def test_units_cap_descriptors_above_the_bridge_s_own_connection_caps() -> None:
    """Issue 28, item 4: ``LimitNOFILE`` is a backstop above the OSC/TCP cap's maximum (and the web's)."""
    from trainsound.bridge.config import ConfigError, from_dict

    for unit in ("trainsound-bridge.service", "trainsound-bridge-system.service"):
        lines = dict(line.split("=", 1) for line in (UNITS / unit).read_text().splitlines() if "=" in line)
        limit = int(lines["LimitNOFILE"])
        assert limit == 4096, unit
        from_dict({"bridge": {"tcp_max_connections": 1024}})  # the cap's maximum is valid...
        with pytest.raises(ConfigError, match="tcp_max_connections"):
            from_dict({"bridge": {"tcp_max_connections": 1025}})  # ...and is the maximum
        assert limit > 1024 * 2  # the TCP cap's maximum and as much again for the web page and files
