"""The listening page in real headless Chromium, served by a real bridge process, fed by python-osc."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, free_udp_port, wait_until
from webrig import chrome, free_tcp_port, logged_url, web_bridge

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCREENSHOT = ROOT / "docs" / "img" / "web-page.png"


@pytest.fixture
def driver() -> Iterator[Any]:
    d = chrome()
    try:
        yield d
    finally:
        d.quit()


def js(driver: Any, code: str) -> Any:
    return driver.execute_script(f"return {code}")


def page_text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))


def test_page_shows_runs_values_alarms_and_plays(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}")
    try:
        driver.get(f"http://127.0.0.1:{web}/")
        wait_until(lambda: js(driver, "window.trainsound.state.hellos") >= 1, what="the page's first hello")
        b.send("/nn/webrun/step", 42)
        for i in range(40):  # over 2 s, so that the plots have something to scroll
            b.send("/nn/webrun/grad_norm/conv1", 0.5 + 0.2 * math.sin(i / 4) + i * 0.005)
            b.send("/nn/webrun/grad_norm/fc2", 0.02 * (1 + i / 10))
            b.send("/nn/webrun/loss", 2.0 - i * 0.025)
            b.send("/nn/otherrun/grad_norm/conv1", 3.0 + math.cos(i / 5))
            time.sleep(0.05)
        last = f"{0.5 + 0.2 * math.sin(39 / 4) + 39 * 0.005:.5g}"
        wait_until(lambda: last in page_text(driver, "tr[data-run='webrun'][data-group='conv1']"), what="conv1's value")
        rows = page_text(driver, "#runs")  # conv1, fc2: voice groups of one layer each (named as the layer)
        for text in ("webrun", "otherrun", "conv1", "fc2", "loss", "gradient", "step 42", "1.025", "0.098"):
            assert text in rows, text
        # Each row shows the pitch the bridge's sine renderer would play (bridge/sound/maps.py pitch_hz).
        hz = float(page_text(driver, "tr[data-run='webrun'][data-group='conv1'] td:nth-child(4)"))
        assert 110.0 <= hz <= 3520.0

        b.send("/nn/webrun/grad_norm/conv2", float("nan"))
        wait_until(lambda: "nan in conv2" in page_text(driver, "#alarms li"), what="the NaN in the alarm log")
        assert "webrun step 42" in page_text(driver, "#alarms li")
        # The NaN reaches another layer: the same incident (no second alarm), listed with its members.
        b.send("/nn/webrun/grad_norm/fc2", float("nan"))
        wait_until(lambda: "conv2, fc2" in page_text(driver, "#incidents li"), what="the incident's members")
        assert "nan in conv2 and 1 more streams" in page_text(driver, "#incidents li")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#alarms li")) == 1

        assert driver.find_element(By.ID, "alarms").get_attribute("aria-live") == "assertive"
        wait_until(lambda: "accepted" in page_text(driver, "#counters") and "feed" in page_text(driver, "#outputs"),
                 what="counters and output health")

        driver.find_element(By.ID, "listen").click()
        wait_until(lambda: js(driver, "window.trainsound.engine.running"), what="the AudioContext running")
        levels = [wait_until(lambda: js(driver, "window.trainsound.engine.rms()") > 0.01, what="sound") and
                  js(driver, "window.trainsound.engine.rms()") for _ in range(3)]
        assert min(levels) > 0.01, levels
        assert js(driver, "window.trainsound.engine.voices.size") == 4  # conv1, fc2, loss of webrun; conv1 of otherrun
        # Mute everything: the page falls silent.
        driver.find_element(By.CSS_SELECTOR, "section[aria-label='run webrun'] button").click()
        driver.find_element(By.CSS_SELECTOR, "section[aria-label='run otherrun'] button").click()
        wait_until(lambda: js(driver, "window.trainsound.engine.rms()") < 1e-3, what="silence after muting both runs")

        for run in ("webrun", "otherrun"):  # sound on again for the screenshot
            driver.find_element(By.CSS_SELECTOR, f"section[aria-label='run {run}'] button").click()
        wait_until(lambda: js(driver, "window.trainsound.engine.rms()") > 0.01, what="sound after unmuting")
        time.sleep(0.3)  # one more plot frame
        driver.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("TRAINSOUND_UPDATE_DOCS"):  # the docs' picture, on request only: a test run leaves
            shutil.copy(tmp_path / "page.png", SCREENSHOT)  # the checkout as it found it
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        b.stop()


def test_a_grouped_gpt2_shaped_run_shows_its_voice_groups(driver: Any) -> None:
    """48 layers named like GPT-2's (``transformer.h.{i}.mlp.c_fc.weight``…): the page's rows are the
    run's voice groups, as ``trainsound status`` names them, each with its mute/solo buttons."""
    from selenium.webdriver.common.by import By

    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}")
    try:
        driver.get(f"http://127.0.0.1:{web}/")
        wait_until(lambda: js(driver, "window.trainsound.state.hellos") >= 1)
        layers = [f"transformer.h.{i}.{p}" for i in range(12) for p in
                  ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")]
        for step in range(3):
            b.send("/nn/gpt2/step", step)
            for k, layer in enumerate(layers):
                b.send(f"/nn/gpt2/grad_norm/{layer}", 0.01 * (k + 1) * (step + 1))
            time.sleep(0.1)
        groups = wait_until(lambda: b.status()["groups"].get("gpt2", {}).get("grad_norm_notes"), what="the groups")
        sel = "section[aria-label='run gpt2'] tr[data-id]"
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, sel)) == len(groups), what="a row per group")
        trs = driver.find_elements(By.CSS_SELECTOR, sel)
        assert 2 <= len(groups) <= 14 and [tr.get_attribute("data-group") for tr in trs] == list(groups)
        assert not any(tr.get_attribute("data-id").startswith("/nn/") for tr in trs)
        buttons = page_text(driver, "section[aria-label='run gpt2'] .groups")
        assert all(g in buttons for g in groups)
        # Names a person reads: the rule's measure ("gradient"), its config name one hover away; a legend.
        names = {tr.find_elements(By.TAG_NAME, "td")[1].text for tr in trs}
        titles = {tr.find_elements(By.TAG_NAME, "td")[1].get_attribute("title") for tr in trs}
        assert names == {"gradient"} and titles == {"mapping rule: grad_norm_notes"}, (names, titles)
        legend = wait_until(lambda: driver.find_element(By.CSS_SELECTOR, "section[aria-label='run gpt2'] canvas")
                            .get_attribute("data-legend"), what="the plot's legend")
        assert f"{next(iter(groups))} gradient" in legend, legend
    finally:
        b.stop()


def test_keyboard_moves_between_rows_and_mutes_a_group(driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}")
    try:
        driver.get(f"http://127.0.0.1:{web}/")
        wait_until(lambda: js(driver, "window.trainsound.state.hellos") >= 1)
        b.send("/nn/k/grad_norm/a", 1.0)
        b.send("/nn/k/loss", 1.0)
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#runs tr[data-id]")) == 2, what="two rows")
        first, second = driver.find_elements(By.CSS_SELECTOR, "#runs tr[data-id]")
        first.send_keys(Keys.ARROW_DOWN)
        assert driver.switch_to.active_element == second
        second.send_keys("m")
        group = second.get_attribute("data-group")
        wait_until(lambda: "muted" in second.text, what="the row's group muted")
        assert js(driver, f"window.trainsound.ui.muted.has('group:k/{group}')")
    finally:
        b.stop()


def test_page_reconnects_after_two_bridge_restarts(driver: Any) -> None:
    web, port = free_tcp_port(), free_udp_port()
    b = web_bridge(f"127.0.0.1:{web}", port)
    try:
        driver.get(f"http://127.0.0.1:{web}/")
        wait_until(lambda: js(driver, "window.trainsound.state.hellos") >= 1)
        for n in (2, 3):
            b.stop()
            wait_until(lambda: "retrying" in page_text(driver, "#conn"), what="the page noticing the bridge gone")
            b = web_bridge(f"127.0.0.1:{web}", port)
            wait_until(lambda n=n: js(driver, "window.trainsound.state.hellos") >= n, timeout=15, what=f"hello {n}")
            b.send(f"/nn/life{n}/grad_norm/l", 0.25)
            wait_until(lambda n=n: f"life{n}" in page_text(driver, "#runs"), what=f"run life{n} after restart")
        assert js(driver, "window.trainsound.state.connects") >= 3
        assert page_text(driver, "#conn") == "connected"
    finally:
        b.stop()


#: What :func:`_get` returns for a connection the bridge cut at accept, before reading a byte.
CUT = -1


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (ConnectionResetError, urllib.error.URLError):
        return CUT


def test_beyond_loopback_needs_the_allowlist_and_the_token() -> None:
    web = free_tcp_port()
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "bridge", "--no-midi", "--listen",
                        f"127.0.0.1:{free_udp_port()}", "--web", f"0.0.0.0:{web}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("trainsound: error: refusing to serve the web page on 0.0.0.0")

    b = web_bridge(f"0.0.0.0:{web}", extra=("--web-allow", "10.0.0.0/8"))
    try:
        url = logged_url(b)
        assert "?token=" in url
        token = url.split("?token=", 1)[1]
        base = f"http://127.0.0.1:{web}/"
        assert _get(base) == 403
        assert _get(base + "static/app.js") == 403
        assert _get(base + "?token=wrong") == 403
        assert _get(base + f"?token={token}") == 200
        assert _get(base + f"static/app.js?token={token}") == 200
        assert b.status()["web"]["token"] is True and token not in str(b.status())
    finally:
        b.stop()


def test_history_per_stream_is_bounded_on_the_page_and_for_late_joiners(driver: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[web]\nhistory = 10\n")
    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}", extra=("--config", str(cfg)))
    try:
        driver.get(f"http://127.0.0.1:{web}/")
        wait_until(lambda: js(driver, "window.trainsound.state.hellos") >= 1)
        for i in range(40):
            b.send("/nn/long/loss", float(i + 1))
            time.sleep(0.03)  # one per 20 ms poll at least, so each value is a point
        wait_until(lambda: "40" in page_text(driver, "tr[data-id='/nn/long/loss']"), what="the last value")
        hist = js(driver, "window.trainsound.model.runs.get('long').rows.get('/nn/long/loss').history")
        assert len(hist) == 10 and hist[-1][1] == 40.0
        driver.refresh()  # a page that joins late gets the server's bounded history
        wait_until(lambda: js(driver, "window.trainsound.state.hellos") >= 1)
        wait_until(lambda: "40" in page_text(driver, "tr[data-id='/nn/long/loss']"), what="the value after reload")
        hist = js(driver, "window.trainsound.model.runs.get('long').rows.get('/nn/long/loss').history")
        assert 5 <= len(hist) <= 10 and hist[-1][1] == 40.0
    finally:
        b.stop()


def own_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None if it has none."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))
        addr: str = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


def test_a_request_from_a_non_loopback_address_needs_the_token(driver: Any) -> None:
    addr = own_address()
    assert addr is not None, "this test needs a non-loopback IPv4 address on the machine"
    web = free_tcp_port()
    b = web_bridge(f"0.0.0.0:{web}", extra=("--web-allow", f"{addr}/32"))
    try:
        url = logged_url(b)
        token = url.split("?token=", 1)[1]
        assert _get(f"http://{addr}:{web}/") == 403
        assert _get(f"http://{addr}:{web}/?token={token}") == 200
        # The page opened with the token gets its assets (cookie) and its WebSocket (token in the URL).
        driver.get(f"http://{addr}:{web}/?token={token}")
        wait_until(lambda: js(driver, "window.trainsound && window.trainsound.state.hellos") >= 1, what="hello")
        b.send("/nn/far/loss", 0.5)
        wait_until(lambda: "far" in page_text(driver, "#runs"), what="the run through the token page")
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        b.stop()
    ip = ipaddress.ip_address(addr)
    other = next(n for n in ("198.51.100.0/24", "203.0.113.0/24") if ip not in ipaddress.ip_network(n))
    b = web_bridge(f"0.0.0.0:{web}", extra=("--web-allow", other))  # not us: cut even with the token
    try:
        token = logged_url(b).split("?token=", 1)[1]
        assert _get(f"http://{addr}:{web}/?token={token}") == CUT  # at accept, before a byte is parsed
        wait_until(lambda: b.status()["web"]["refused"].get("not_allowed") == 1, what="the refusal counted")
    finally:
        b.stop()


COUNTERS = {"messages": "received", "accepted": "accepted", "dropped": "dropped_total"}


def page_counters(driver: Any) -> dict[str, str]:
    """The Bridge panel as a person reads it: label → text."""
    pairs = js(driver, "[...document.querySelectorAll('#counters dt')].map(dt => [dt.textContent, "
                       "dt.nextElementSibling.textContent])")
    return dict(pairs)


def cli_status(port: int) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "status", "--to", f"127.0.0.1:{port}", "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_the_bridge_panel_shows_what_status_json_says_while_data_streams_in(driver: Any) -> None:
    """Issue 24: the panel showed uptime 0 s, messages 0, runs 0 while mapped was 3,345 (a status of the
    bridge's first moment, with the engine's live counters inside). While data streams in, each counter on the
    page lies between two ``trainsound status --json`` taken just before and after reading the page, all from
    one moment (received ≥ mapped's messages); at rest the page equals ``status --json``."""
    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}")
    stop = threading.Event()

    def stream() -> None:
        i = 0
        while not stop.is_set():
            b.send("/nn/hf/step", i)
            b.send("/nn/hf/loss", 2.0 - i * 1e-3)
            for layer in range(8):
                b.send(f"/nn/hf/grad_norm/layer{layer}", 0.1 * (layer + 1) + i * 1e-4)
            i += 1
            time.sleep(0.01)

    try:
        for i in range(300):  # data before the page opens: the page's first status must not be the start's
            b.send("/nn/early/loss", 1.0 + i)
        time.sleep(1.5)
        driver.get(f"http://127.0.0.1:{web}/")
        wait_until(lambda: js(driver, "window.trainsound.state.hellos") >= 1)
        first = js(driver, "window.trainsound.model.status")  # the hello's: not the bridge's first moment
        assert first["uptime"] >= 1.0 and first["received"] >= 300 and first["runs"] == ["early"], first
        assert first["mapping"]["mapped"] <= first["accepted"], first
        t = threading.Thread(target=stream, daemon=True)
        t.start()
        checked = 0
        t_end = time.monotonic() + 8.0
        while time.monotonic() < t_end:
            before = cli_status(b.port)
            shown = page_counters(driver)
            after = cli_status(b.port)
            if shown["uptime"] == "–":
                continue
            # The page's status is at most ~1 s old (published every 0.5 s): no older than "before" less 1.5 s.
            assert before["uptime"] - 2.0 <= float(shown["uptime"].split()[0]) <= after["uptime"] + 1.0, shown
            for label, key in COUNTERS.items():
                assert int(shown[label]) <= after[key], (label, shown, after)
            assert int(shown["messages"]) >= 300 and shown["runs"] in ("1", "2"), shown
            # One moment: the engine's mapped count never runs ahead of the messages the page shows.
            assert int(shown["mapped"]) <= int(shown["accepted"]) * 2, shown
            checked += 1
            time.sleep(0.3)
        stop.set()
        t.join(5)
        assert checked >= 5
        time.sleep(1.0)
        # At rest (the status query is itself a message): the next published status equals this one.
        st = cli_status(b.port)
        time.sleep(1.5)
        shown = page_counters(driver)
        expect = {label: str(st[key]) for label, key in COUNTERS.items()}
        assert {k: shown[k] for k in expect} == expect
        assert shown["mapped"] == str(st["mapping"]["mapped"]) and shown["alarms"] == str(st["mapping"]["alarms"])
        assert shown["runs"] == str(len(st["runs"])) == "2"
        assert 0 <= float(shown["uptime"].split()[0]) - st["uptime"] <= 2.5
    finally:
        stop.set()
        b.stop()
