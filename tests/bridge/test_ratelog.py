"""The shared log helpers: escaping and rate limiting."""

from __future__ import annotations

import logging

from trainsound.bridge.ratelog import EscapingFormatter, RateLimited, escape


def test_escape_keeps_one_line() -> None:
    assert escape("a\nb\rc\td\x00e\x7f\u2028") == "a\\nb\\rc\\td\\x00e\\x7f\\u2028"
    assert escape("plain ünïcode") == "plain ünïcode"


def test_formatter_escapes_message_not_traceback() -> None:
    f = EscapingFormatter("%(levelname)s %(message)s")
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "dropped %s", ("/nn/a\nCRITICAL fake",), None)
    assert f.format(rec) == "WARNING dropped /nn/a\\nCRITICAL fake"


def test_rate_limited_counts_suppressed(caplog) -> None:  # type: ignore[no-untyped-def]
    t = [0.0]
    rl = RateLimited(logging.getLogger("t.rl"), interval=10.0, clock=lambda: t[0])
    with caplog.at_level(logging.WARNING, "t.rl"):
        assert rl.warning("k", "cannot reply to %s", "x")
        for _ in range(5):
            assert not rl.warning("k", "cannot reply to %s", "x")
        assert rl.warning("other", "different key")
        t[0] = 10.0
        assert rl.warning("k", "cannot reply to %s", "y")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["cannot reply to x", "different key", "cannot reply to y (+5 more like this suppressed)"]


def test_multiline_is_kept_only_when_asked() -> None:
    from trainsound.bridge.ratelog import MULTILINE

    f = EscapingFormatter("%(message)s")
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "patch raised\n%s", ("Traceback ...",), None)
    rec.__dict__.update(MULTILINE)
    assert f.format(rec) == "patch raised\nTraceback ..."
