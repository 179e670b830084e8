"""``trainsound top`` against a real bridge: in tmux at 80×24 (send-keys, capture-pane), and with no bridge."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support import BridgeProc, free_udp_port, wait_until

from trainsound.bridge.service.top import SNAPSHOT, History, SnapshotClient, render, sparkline


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10)


def capture(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session).stdout


@pytest.mark.slow
def test_top_in_tmux_shows_run_group_alarm_and_quits_on_q(udp_port: int) -> None:
    if not shutil.which("tmux"):
        pytest.fail("tmux is not installed: run the README's test command, which installs it")
    b = BridgeProc(["--no-midi", "--stats-interval", "0"], udp_port)
    session = f"ts_top_{uuid.uuid4().hex[:6]}"
    try:
        b.send("/nn/toprun/step", 17)
        for i in range(5):
            b.send("/nn/toprun/grad_norm/encoder.0", 0.1 * (i + 1))
            b.send("/nn/toprun/loss", 1.0 / (i + 1))
        cmd = f"TRAINSOUND_ADDR=127.0.0.1:{udp_port} {sys.executable} -m trainsound.bridge top --refresh 0.1"
        assert tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", session, cmd).returncode == 0
        screen = ""
        for _ in range(100):
            screen = capture(session)
            if "toprun" in screen:
                break
            time.sleep(0.1)
        assert "toprun @17" in screen and "encoder.0" in screen and "gradient" in screen and "loss" in screen, screen
        b.send("/nn/toprun/grad_norm/encoder.1", float("nan"))
        for _ in range(100):
            screen = capture(session)
            if "nan in encoder.1" in screen:
                break
            time.sleep(0.1)
        assert "toprun step 17: nan in encoder.1" in screen, screen
        assert all(len(line) <= 80 for line in screen.splitlines())
        tmux("send-keys", "-t", session, "q")
        for _ in range(50):
            if tmux("has-session", "-t", session).returncode != 0:
                break
            time.sleep(0.1)
        assert tmux("has-session", "-t", session).returncode != 0, "top did not quit on q"
    finally:
        tmux("kill-session", "-t", session)
        b.stop()


def test_top_with_no_bridge_exits_1_with_one_line() -> None:
    port = free_udp_port()
    env = dict(os.environ, TRAINSOUND_ADDR=f"127.0.0.1:{port}")
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "top"], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"trainsound: error: no answer from a bridge at 127.0.0.1:{port} (is it running? --to or TRAINSOUND_ADDR)"
    )
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "top", "--to", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"127.0.0.1:{port}" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_sparkline_is_log_scaled_and_marks_non_finite() -> None:
    assert sparkline([1e-4, 1e-2, 1.0]) == "▁▅█"
    assert sparkline([-1.0, 0.0, 1.0]) == "▁▅█"
    assert sparkline([1.0, float("inf")]) == "▁!"
    assert len(sparkline(range(1, 100), 24)) == 24


def test_history_keeps_a_bounded_window_per_row_and_forgets_gone_runs() -> None:
    h = History()
    for i in range(100):
        h.update({"runs": [{"rows": [{"id": "/nn/a/loss", "t": float(i), "value": float(i)}]}]})
    assert len(h.rows["/nn/a/loss"]) == 24 and h.rows["/nn/a/loss"][-1] == 99.0
    h.update({"runs": [{"rows": [{"id": "/nn/a/loss", "t": 99.0, "value": 5.0}]}]})  # same t: not a new point
    assert h.rows["/nn/a/loss"][-1] == 99.0
    h.update({"runs": []})
    assert h.rows == {}


def test_top_shows_a_grouped_gpt2_shaped_run_as_its_groups(udp_port: int) -> None:
    """A real bridge's snapshot of 48 GPT-2-named layers: top's rows are the run's voice groups, in the
    layout's order and named as ``trainsound status`` names them (TCP snapshot, then UDP: the same rows)."""
    from rich.console import Console

    b = BridgeProc(["--no-midi", "--stats-interval", "0"], udp_port)
    client = SnapshotClient("127.0.0.1", udp_port)
    try:
        layers = [f"transformer.h.{i}.{p}" for i in range(12) for p in
                  ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")]
        for step in range(3):
            b.send("/nn/gpt2/step", step)
            for k, layer in enumerate(layers):
                b.send(f"/nn/gpt2/grad_norm/{layer}", 0.01 * (k + 1) * (step + 1))
            time.sleep(0.1)
        groups: dict[str, float] = {}
        for _ in range(50):
            groups = b.status()["groups"].get("gpt2", {}).get("grad_norm_notes", {})
            if groups:
                break
            time.sleep(0.1)
        assert 2 <= len(groups) <= 14
        for snap in (client.get(), client.udp(SNAPSHOT)):
            assert snap is not None
            [run] = snap["runs"]
            assert [r["group"] for r in run["rows"]] == list(groups)
            assert [r["value"] for r in run["rows"]] == pytest.approx(list(groups.values()))
        console = Console(width=80, record=True, file=io.StringIO())
        console.print(render(snap, History(), "here", 80, 24))
        screen = console.export_text()
        assert all(g in screen for g in list(groups)[:8]) and "transformer.h" not in screen, screen
    finally:
        client.close()
        b.stop()


@pytest.mark.slow
def test_top_selects_a_group_and_brings_it_forward_with_f(udp_port: int, tmp_path: Path) -> None:
    if not shutil.which("tmux"):
        pytest.fail("tmux is not installed: run the README's test command, which installs it")
    b = BridgeProc(["--no-midi", "--stats-interval", "0", "--wav", str(tmp_path / "out.wav")], udp_port)
    session = f"ts_top_{uuid.uuid4().hex[:6]}"

    def forward() -> list[str]:
        return [f"{f['run']}/{f['group']}" for f in b.status()["outputs"]["sine"]["forward"]]

    def screen_shows(text: str) -> str:
        for _ in range(100):
            screen = capture(session)
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on the screen:\n{screen}")

    try:
        for i in range(3):
            b.send("/nn/fr/step", i)
            b.send("/nn/fr/loss", 1.0 / (i + 1))
            for k in range(6):
                b.send(f"/nn/fr/grad_norm/l{k}", 10.0 ** (k - 3))
        cmd = f"TRAINSOUND_ADDR=127.0.0.1:{udp_port} {sys.executable} -m trainsound.bridge top --refresh 0.1"
        assert tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", session, cmd).returncode == 0
        screen_shows("l5")
        for key in ("j", "Down", "f"):  # the first group row, the next (an arrow key), forward
            tmux("send-keys", "-t", session, key)
            time.sleep(0.3)
        wait_until(lambda: forward() == ["fr/l1"],
                   what=lambda: f"l1 forward in the bridge's status (forward: {forward()}):\n{capture(session)}")
        screen_shows("▲l1")
        tmux("send-keys", "-t", session, "F")
        wait_until(lambda: forward() == [], what="every group back")
        tmux("send-keys", "-t", session, "q")
    finally:
        tmux("kill-session", "-t", session)
        b.stop()
