"""``bridge --reference``: the listening page draws each stream's reference beside its live value, dashed
(real headless Chromium, a real bridge process, python-osc sending)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from webrig import chrome, free_tcp_port, web_bridge

from trainsound.bridge.wire.session import SessionWriter, encode_message

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_page_draws_the_reference_dashed_beside_each_value(tmp_path: Path) -> None:
    ref = tmp_path / "ref.tsr"
    with open(ref, "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        for s in range(20):
            w.write(s * 0.1, encode_message("/nn/base/step", [s]))
            w.write(s * 0.1 + 0.01, encode_message("/nn/base/loss", [2.0 / (s + 1)]))
        w.flush()
    d: Any = chrome()
    web = free_tcp_port()
    b = web_bridge(f"127.0.0.1:{web}", extra=("--reference", str(ref)))
    try:
        d.get(f"http://127.0.0.1:{web}/")
        wait_until(lambda: d.execute_script("return window.trainsound.state.hellos") >= 1, what="the first hello")
        # Count the dashed strokes the plot makes from now on.
        d.execute_script("""
            window.dashes = 0;
            const set = CanvasRenderingContext2D.prototype.setLineDash;
            CanvasRenderingContext2D.prototype.setLineDash = function (seg) {
              if (seg.length) window.dashes++;
              return set.call(this, seg);
            };""")
        for s in range(10):
            b.send("/nn/new/step", s)
            b.send("/nn/new/loss", 3.0 / (s + 1))  # 1.5× the reference's
            time.sleep(0.08)
        get = "const r = window.trainsound.model.runs.get('new'); const row = r && r.rows.get('/nn/new/loss');"
        wait_until(lambda: d.execute_script(f"{get} return row && row.refHistory ? row.refHistory.length : 0") >= 3,
                   what="reference values on the page")
        pairs = d.execute_script(f"{get} return [row.history.slice(-1)[0][1], row.refHistory.slice(-1)[0][1]]")
        assert pairs[0] == pytest.approx(1.5 * pairs[1], rel=1e-5)
        wait_until(lambda: d.execute_script("return window.dashes") > 0, what="a dashed line on the plot")
        assert [e for e in d.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        b.stop()
        d.quit()
