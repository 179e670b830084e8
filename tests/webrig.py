"""Helpers for the web page's tests and benchmark: a bridge serving the page, headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import time
from typing import Any

from support import BridgeProc, free_udp_port

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1280,1000",
]


def free_tcp_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def web_bridge(web: str, port: int | None = None, extra: tuple[str, ...] = ()) -> BridgeProc:
    """``trainsound bridge --no-midi --web WEB`` as a real process (the page starts before the ping answers)."""
    return BridgeProc(["--no-midi", "--stats-interval", "0", "--web", web, *extra], port or free_udp_port())


def logged_url(b: BridgeProc, timeout: float = 10.0) -> str:
    """The page's URL from the bridge's log line ``web page: URL``."""
    assert b.proc.stderr is not None
    t0 = time.time()
    while time.time() - t0 < timeout:
        line = b.proc.stderr.readline()
        if "web page: " in line:
            return line.split("web page: ", 1)[1].strip()
    raise TimeoutError("the bridge did not log its web page's URL")


def chrome() -> Any:
    """Headless Chromium through chromedriver (Debian's ``chromium`` and ``chromium-driver``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not os.path.exists(binary) or not os.path.exists(driver_path):
        raise RuntimeError("Chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for f in CHROMIUM_FLAGS:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)
