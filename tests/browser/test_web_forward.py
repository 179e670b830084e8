"""The page's "F" button brings a voice group forward in the bridge's sine output (real bridge, headless Chromium)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from webrig import chrome, free_tcp_port, web_bridge

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def driver() -> Iterator[Any]:
    d = chrome()
    try:
        yield d
    finally:
        d.quit()


def forward(b: Any) -> list[str]:
    return [f"{f['run']}/{f['group']}" for f in b.status()["outputs"]["sine"]["forward"]]


def test_the_forward_button_sends_the_group_forward_and_back(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}", extra=("--wav", str(tmp_path / "out.wav")))
    try:
        driver.get(f"http://127.0.0.1:{web}/")
        wait_until(lambda: driver.execute_script("return window.trainsound.state.hellos") >= 1, what="the hello")
        for i in range(3):
            b.send("/nn/r1/step", i)
            b.send("/nn/r1/loss", 2.0 / (1 + i))
            for k in range(6):
                b.send(f"/nn/r1/grad_norm/l{k}", 10.0 ** (k - 3))
        css = """button[data-forward='["r1","l3"]']"""
        button = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, css), what="l3's forward button")[0]
        assert button.get_attribute("aria-label") == "bring l3 of r1 forward in the bridge's sound"
        assert forward(b) == []
        button.click()
        wait_until(lambda: forward(b) == ["r1/l3"], what="l3 forward in the bridge's status")
        wait_until(lambda: button.get_attribute("aria-pressed") == "true", what="the button pressed")
        button.click()  # again: back to the bed
        wait_until(lambda: forward(b) == [], what="l3 back")
        wait_until(lambda: button.get_attribute("aria-pressed") == "false", what="the button released")
        # A message the bridge does not know: one log line, the bridge carries on.
        driver.execute_script("window.trainsound.socket.send('{\"forward\": 3}')")
    finally:
        code, log = b.stop()
    assert code == 0, log
    assert "web: ignored a page message" in log
