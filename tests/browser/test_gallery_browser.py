"""The demo's gallery in a real browser: headless Chromium loads index.html from a local HTTP server;
the page's own check (every <img> decoded, every <audio> loaded, no error) must say ok; a screenshot is saved."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.torch, pytest.mark.slow]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--virtual-time-budget=15000",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed: run the README's test command, which installs it")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gallery")
    cmd = [sys.executable, "-m", "trainsound.bridge", "demo", "--quiet", "--out", str(out)]
    r = subprocess.run([*cmd, "--runs", "sgd-0.1", "--steps", "10"], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture
def server(gallery: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(gallery))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def run_chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )


def test_every_image_and_audio_loads_in_chromium(gallery: Path, server: str) -> None:
    r = run_chromium("--dump-dom", server)
    m = re.search(r'<p id="media-check" data-ok="(\w+)">([^<]*)</p>', r.stdout)
    assert m, f"no media check in the DOM; stderr: {r.stderr[-2000:]}"
    assert m.group(1) == "true", m.group(2)
    assert "2 images, 2 audio" in m.group(2)


def test_screenshot_is_saved(gallery: Path, server: str) -> None:
    shot = gallery / "screenshot.png"
    run_chromium(f"--screenshot={shot}", "--window-size=1280,2400", server)
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def grid_server(keras_full_demo: tuple[Path, str, float]) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(keras_full_demo[0]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/keras-full.html"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.keras
@pytest.mark.timeout(900)  # may be the first user of the 96-run fixture
def test_the_keras_full_grid_page_loads_every_image_and_audio(keras_full_demo: tuple[Path, str, float],
                                                               grid_server: str) -> None:
    r = run_chromium("--dump-dom", grid_server)
    m = re.search(r'<p id="media-check" data-ok="(\w+)">([^<]*)</p>', r.stdout)
    assert m, f"no media check in the DOM; stderr: {r.stderr[-2000:]}"
    assert m.group(1) == "true", m.group(2)
    assert "96 images, 96 audio" in m.group(2)
    shot = keras_full_demo[0] / "keras-full-screenshot.png"
    run_chromium(f"--screenshot={shot}", "--window-size=1280,2400", grid_server)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
