"""Voice groups: the pure layout and aggregation (bridge/mapping/groups.py) and the ``[groups]`` config table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainsound.bridge.config import ConfigError, default, from_dict
from trainsound.bridge.mapping.engine import Engine
from trainsound.bridge.mapping.groups import GroupOptions, aggregate, plan
from trainsound.bridge.mapping.rungroups import RunGroups
from trainsound.bridge.wire.protocol import parse_event

GPT2 = (["transformer.wte", "transformer.wpe"]
        + [f"transformer.h.{i}.{m}" for i in range(12) for m in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2",
                                                                  "mlp.c_fc", "mlp.c_proj")]
        + ["transformer.ln_f", "lm_head"])


def test_auto_layout_splits_the_repeating_index_into_contiguous_depth_groups() -> None:
    lay = plan(GPT2, GroupOptions(max_voices=8))
    assert lay.names == ("transformer.wte–transformer.wpe", "h.0–h.1", "h.2–h.3", "h.4–h.5", "h.6–h.7", "h.8–h.9",
                         "h.10–h.11", "transformer.ln_f–lm_head")
    assert len(lay.members[1]) == 12 and all(".h.0." in x or ".h.1." in x for x in lay.members[1])
    # Every layer in exactly one group, model order kept.
    assert [x for m in lay.members for x in m] == GPT2


@pytest.mark.parametrize("n", [1, 3, 14, 40])
def test_never_more_groups_than_voices(n: int) -> None:
    assert len(plan(GPT2, GroupOptions(max_voices=n)).names) <= max(n, 1)
    assert len(plan([f"l{i}" for i in range(50)], GroupOptions(max_voices=n)).names) <= n


def test_encoder_layers_and_blocks_are_containers_too() -> None:
    assert plan([f"encoder.layers.{i}.fc" for i in range(6)], GroupOptions(max_voices=3)).names == (
        "layers.0–layers.1", "layers.2–layers.3", "layers.4–layers.5")
    assert plan([f"blocks.{i}" for i in range(4)], GroupOptions(max_voices=14)).names == (
        "blocks.0", "blocks.1", "blocks.2", "blocks.3")


def test_pattern_groups_with_captures_and_the_rest() -> None:
    cfg = from_dict({"groups": {"patterns": [{"name": "attn{i}", "match": "transformer.h.{i}.attn.*"},
                                             {"name": "mlp", "match": "transformer.h.*.mlp.*"}]}})
    lay = plan(GPT2, cfg.groups)
    assert lay.names[:3] == ("other", "attn0", "mlp") and "attn11" in lay.names
    assert lay.members[2] == tuple(x for x in GPT2 if ".mlp." in x)


@pytest.mark.parametrize("how, want", [("rms", 5.0), ("max", 7.0), ("mean", 4.0)])
def test_aggregates(how: str, want: float) -> None:
    assert aggregate([1.0, 7.0], how) == pytest.approx(want)


def test_a_group_sounds_once_per_round_with_its_rms() -> None:
    rg = RunGroups(GroupOptions(max_voices=2))
    assert rg.feed("h.0.a", 3.0, 0.0) == [] and rg.feed("h.1.a", 4.0, 0.0) == [] and rg.feed("h.2.a", 1.0, 0.0) == []
    out = rg.settle()
    assert [(g, n) for g, n, _ in out] == [(0, "h.0–h.1"), (1, "h.2")]
    assert out[0][2] == pytest.approx((12.5) ** 0.5)
    assert rg.feed("h.0.a", 3.0, 1.0) == []  # its group waits for h.1.a
    assert rg.feed("h.1.a", 4.0, 1.0)[0][:2] == (0, "h.0–h.1")
    assert rg.values() == {"h.0–h.1": pytest.approx(12.5**0.5), "h.2": 1.0}


def test_engine_groups_a_run_and_reports_latest_values() -> None:
    eng = Engine(default())
    out = []
    for i in range(30):
        out += eng.map(parse_event(f"/nn/r/grad_norm/transformer.h.{i}.mlp", (1.0,), 0.0, b""))
    assert out == []  # held until the layout settles
    out = eng.map(parse_event("/nn/r/step", (0,), 0.01, b""))
    assert len(out) == 14 and len({m.channel for m in out}) == 14 and {m.groups for m in out} == {14}
    assert 10 not in {m.channel for m in out} and 16 not in {m.channel for m in out}
    assert set(eng.groups()["r"]["grad_norm_notes"]) == {m.stream[1] for m in out}


def test_none_keeps_one_voice_per_layer() -> None:
    eng = Engine(from_dict({"groups": {"mode": "none"}}))
    [m] = eng.map(parse_event("/nn/r/grad_norm/transformer.h.3.mlp", (1.0,), 0.0, b""))
    assert m.stream == ("r", "transformer.h.3.mlp")


@pytest.mark.parametrize("groups, message", [
    ({"mode": "bands"}, "groups.mode must be one of auto, patterns, none; got 'bands'"),
    ({"aggregate": "median"}, "groups.aggregate must be one of rms, max, mean; got 'median'"),
    ({"max_voices": 15}, "groups.max_voices must be in 1..14, got 15"),
    ({"mode": "patterns"}, "groups.mode is 'patterns' but groups.patterns is empty"),
    ({"patterns": [{"name": "b{i}", "match": "h.{i}.*"}, {"name": "a", "match": "h.0.attn"}]},
     "groups.patterns[1] ('h.0.attn') overlaps patterns[0] ('h.{i}.*'): layer 'h.0.attn' matches both"),
    ({"patterns": [{"name": "b{j}", "match": "h.{i}.*"}]},
     "groups.patterns[0].match: name 'b{j}' uses {j}, which 'h.{i}.*' does not capture"),
    ({"patterns": [{"name": "b", "match": "h/{i}"}]},
     "groups.patterns[0].match: 'h/{i}' can match no layer name (names are non-empty, without '/' or spaces)"),
    ({"patterns": [{"name": "b", "match": "h.{1x}"}]},
     "groups.patterns[0].match: capture {1x} in 'h.{1x}' must be a name like {i}, used once"),
    ({"colour": 1}, "unknown key"),
])
def test_bad_groups_are_refused_naming_the_key(groups: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("{", r"\{").replace("}", r"\}").replace(".", r"\.").replace("*", r"\*")
                       .replace("[", r"\[").replace("]", r"\]").replace("?", r"\?") if message != "unknown key"
                       else "groups"):
        from_dict({"groups": groups})


def test_check_config_refuses_an_overlapping_pattern_in_one_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[[groups.patterns]]\nname = "b{i}"\nmatch = "h.{i}.*"\n'
                 '[[groups.patterns]]\nname = "a"\nmatch = "h.0.attn"\n')
    r = subprocess.run([sys.executable, "-m", "trainsound.bridge", "check-config", str(p)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.strip() == (f"trainsound: error: {p}: groups.patterns[1] ('h.0.attn') overlaps patterns[0] "
                                "('h.{i}.*'): layer 'h.0.attn' matches both")


def test_one_voice_takes_every_layer() -> None:
    lay = plan([*GPT2, "encoder.layers.0.x", "encoder.layers.1.x"], GroupOptions(max_voices=1))
    assert len(lay.names) == 1 and sorted(lay.members[0]) == sorted([*GPT2, "encoder.layers.0.x", "encoder.layers.1.x"])


def test_a_reload_with_bad_groups_is_refused_in_one_line_and_the_bridge_goes_on(tmp_path: Path) -> None:
    import signal
    import time

    from support import BridgeProc, free_udp_port

    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[groups]\nmax_voices = 4\n')
    b = BridgeProc(["--no-midi", "--config", str(cfg)], free_udp_port())
    try:
        cfg.write_text('[[groups.patterns]]\nname = "b{j}"\nmatch = "h.{i}.*"\n')
        b.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        b.send("/nn/r/loss", 1.0)
        time.sleep(0.1)
        st = b.status()
    finally:
        rc, err = b.stop()
    assert rc == 0 and (st["reload_errors"], st["accepted"]) == (1, 1)
    [line] = [x for x in err.splitlines() if "reload refused" in x]
    assert line.endswith(f"{cfg}: groups.patterns[0].match: name 'b{{j}}' uses {{j}}, "
                         "which 'h.{i}.*' does not capture")
