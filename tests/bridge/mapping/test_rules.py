"""Mapping rules are validated and resolved at load time: the hot path looks nothing up per event."""

from __future__ import annotations

import pytest

from trainsound.bridge.config import from_dict
from trainsound.bridge.errors import ConfigError
from trainsound.bridge.mapping.engine import Engine
from trainsound.bridge.mapping.rules import Rule, compile_pattern
from trainsound.bridge.wire.protocol import parse_event


def test_a_rule_carries_its_pattern_kind_captures_voice_key_and_argument_index() -> None:
    r = Rule(match="/nn/{run}/weight/{layer}", arg="std", voice_by=("layer",))
    assert (r.kind, r.captures, r.voice_key, r.index) == ("weight", ("run", "layer"), ("layer",), 1)
    assert r.pattern.fullmatch("/nn/a/weight/fc1") is not None
    open_kind = Rule(match="/nn/{run}/{kind}/{layer}", arg=2)
    assert (open_kind.kind, open_kind.index) == ("", 2)


def test_the_engine_reads_the_resolved_argument() -> None:
    cfg = from_dict({"mappings": [{"match": "/nn/{run}/weight/{layer}", "arg": "update_ratio", "target": "cc",
                                   "scale": "linear", "range": [0, 1]}], "groups": {"mode": "none"}})
    [m] = Engine(cfg).map(parse_event("/nn/r/weight/fc1", (0.1, 0.2, 0.3, 0.4, 0.25), 0.0, b""))
    assert m.value == 0.25


@pytest.mark.parametrize(
    ("match", "why"),
    [
        ("/nn/{run}/grad_norm/{run}", "capture {run} appears twice in '/nn/{run}/grad_norm/{run}'"),
        ("/nn/{1run}/loss", "capture {1run} in '/nn/{1run}/loss' must be a name like {layer}"),
        ("/nn/{run/grad_norm/{layer}", "unbalanced '{' or '}' in '/nn/{run/grad_norm/{layer}'"),
        ("/nn/run}/loss", "unbalanced '{' or '}' in '/nn/run}/loss'"),
    ],
)
def test_a_bad_pattern_is_a_config_error_naming_the_key(match: str, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict({"mappings": [{"match": "/nn/{run}/loss"}, {"match": match}]})
    assert str(e.value) == f"mappings[1].match: {why}"


def test_literal_text_in_a_pattern_is_matched_literally() -> None:
    # Regex syntax legal in names is literal; OSC's own pattern syntax ([ ] ? …) is refused (issue 16).
    assert compile_pattern("/nn/a.b/(x)+$|^/loss").fullmatch("/nn/a.b/(x)+$|^/loss") is not None
    assert compile_pattern("/nn/a.b/loss").fullmatch("/nn/aXb/loss") is None
    for bad in ("/nn/[x]/loss", "/nn/a?/loss", "/nn/{run}/metric/a,b", "/nn/a b/loss", "/nn/a\n/loss"):
        with pytest.raises(ValueError, match="is not supported"):
            compile_pattern(bad)


def test_an_argument_name_the_kind_does_not_have_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"^mappings\[0\]\.arg must be one of mean, std, abs_max, norm, "
                                          r"update_ratio; got 'median'$"):
        from_dict({"mappings": [{"match": "/nn/{run}/weight/{layer}", "arg": "median"}]})
