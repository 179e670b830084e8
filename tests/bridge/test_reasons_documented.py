"""Every reason the bridge can count under is in docs/protocol.md (issue 16: counters and docs disagreed)."""

from __future__ import annotations

import re

from support import ROOT

# Reasons are string literals at the places that count: the decoders' errors and Stats.drop/note.
_REASON = re.compile(r'(?:OSCDecodeError|ProtocolError|SlipError)\(\s*"([a-z_]+)"|\.(?:drop|note)\(\s*"([a-z_]+)"')


def test_every_counted_reason_is_documented() -> None:
    reasons: set[str] = set()
    for path in (ROOT / "bridge").rglob("*.py"):
        for m in _REASON.finditer(path.read_text()):
            reasons.add(m.group(1) or m.group(2))
    assert {"not_osc", "too_many_runs"} - reasons == {"too_many_runs"}  # the scan works; a run is never refused
    assert len(reasons) > 30
    doc = (ROOT / "docs" / "protocol.md").read_text()
    missing = sorted(r for r in reasons if f"`{r}`" not in doc)
    assert not missing, f"reasons counted but not in docs/protocol.md: {missing}"
