"""Config files: validated once, every error names the key path and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainsound.bridge import config as cfg
from trainsound.bridge.cli import main
from trainsound.bridge.errors import ConfigError

GOOD = """
[bridge]
listen = "127.0.0.1:9999"
stats_interval = 5

[midi]
api = "jack"
port = "fs"

[alarm]
channel = 15
note = 100

[[mappings]]
name = "grads"
match = "/nn/{run}/grad_norm/{layer}"
target = "note"
scale = "auto"
musical_scale = "minor"
root = "A"
notes = [40, 80]
voices = "band"
band_width = 10

[[mappings]]
match = "/nn/{run}/weight/{layer}"
arg = "update_ratio"
target = "cc14"
cc = 1
scale = "log"
range = [1e-6, 1e-1]
voice_by = ["layer"]
"""


def test_good_file(tmp_path: Path) -> None:
    p = tmp_path / "bridge.toml"
    p.write_text(GOOD)
    c = cfg.load(p)
    assert c.bridge.listen == ("127.0.0.1", 9999)
    assert c.midi.api == "jack" and c.midi.port == "fs"
    assert c.alarm.channel == 15
    assert len(c.mappings) == 2
    r0, r1 = c.mappings
    assert (r0.scale, r0.root, r0.notes, r0.voices, r0.band_width) == ("auto", 9, (40, 80), "band", 10)
    assert (r1.arg, r1.target, r1.voice_by, r1.range) == ("update_ratio", "cc14", ("layer",), (1e-6, 1e-1))


def test_default_has_the_builtin_mapping() -> None:
    c = cfg.default()
    matches = {r.match for r in c.mappings}
    assert "/nn/{run}/grad_norm/{layer}" in matches and "/nn/{run}/loss" in matches
    assert c.bridge.listen == ("127.0.0.1", 9150)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[[mappings]]\nmatch='/nn/{run}/loss'\nchannel = 17", "mappings[0].channel must be in 1..16, got 17"),
        ('[[mappings]]\nmatch="/nn/{run}/loss"\n[[mappings]]\nmatch="/nn/{run}/loss"\ntarget="drum"',
         "mappings[1].target must be one of note, cc, cc14, pitchbend, pressure; got 'drum'"),
        ("[bridge]\nlisten = 'nowhere'", "bridge.listen must be HOST:PORT, got 'nowhere'"),
        ("[bridge]\nlisten = 'localhost:70000'", "bridge.listen port must be in 1..65535, got 70000"),
        ("[bridge]\nallow = ['10.0.0.0/33']", "bridge.allow[0] must be a network in CIDR form, got '10.0.0.0/33'"),
        ("[bridge]\nlisn = 1", "bridge.lisn is not a known key (value 1)"),
        ("colour = 'red'", "colour is not a known key (value 'red')"),
        ("[midi]\napi = 'oss'", "midi.api must be one of auto, alsa, jack, coremidi, winmm; got 'oss'"),
        ("[[mappings]]\nmatch = 'nn/loss'", "mappings[0].match must be an OSC address pattern starting with '/'"),
        ("[[mappings]]\nmatch = '/nn/{run}/loss'\nscale = 'log'\nrange = [0, 1]",
         "mappings[0].range must be positive for log scaling, got [0.0, 1.0]"),
        ("[[mappings]]\nmatch = '/nn/{run}/loss'\nrange = [5, 1]",
         "mappings[0].range must be [low, high] with low < high, got [5, 1]"),
        ("[[mappings]]\nmatch = '/nn/{run}/weight/{layer}'\narg = 'median'",
         "mappings[0].arg must be one of mean, std, abs_max, norm, update_ratio; got 'median'"),
        ("[[mappings]]\nmatch = '/nn/{run}/loss'\nvoice_by = ['layer']",
         "mappings[0].voice_by names 'layer', which '/nn/{run}/loss' does not capture"),
        ("[[mappings]]\nmatch = '/nn/{run}/loss'\nmusical_scale = 'lydian'",
         "mappings[0].musical_scale must be one of"),
        ("[[mappings]]\nmatch = '/nn/{run}/loss'\nroot = 'H'", "mappings[0].root must be a note name"),
        ("[[mappings]]\nmatch = '/nn/{run}/loss'\ntarget = 'cc14'\ncc = 40", "mappings[0].cc must be in 0..31"),
        ("[[mappings]]\nmatch = '/nn/{run}/loss'\nsmooth = true", "mappings[0].smooth must be a number, got True"),
        ("[alarm]\nnote = 128", "alarm.note must be in 0..127, got 128"),
        ("mappings = 3", "mappings must be an array of tables"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        cfg.load(p)
    assert str(exc.value).startswith(f"{p}: {message}")


def test_every_error_of_a_file_at_once_each_naming_its_key_with_did_you_mean(tmp_path: Path, capsys) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("""
[bridge]
listn = ":9150"
rcvbuf = 1

[midii]
api = "jack"

[[mappings]]
match = "/nn/{run}/loss"
chanel = 3

[[mappings]]
match = "/nn/{run}/grad_norm/{layer}"
channel = 17

[sine]
gian = 0.3
""")
    with pytest.raises(ConfigError) as exc:
        cfg.load(p)
    text = str(exc.value)
    assert text.startswith(f"{p}: 6 errors: "), text
    for part in ("bridge.rcvbuf must be in 65536..1073741824, got 1",
                 "bridge.listn is not a known key (value ':9150'); did you mean bridge.listen?",
                 "midii is not a known key (value {'api': 'jack'}); did you mean midi?",
                 "mappings[0].chanel is not a known key (value 3); did you mean mappings[0].channel?",
                 "mappings[1].channel must be in 1..16, got 17",
                 "sine.gian is not a known key (value 0.3); did you mean sine.gain?"):
        assert part in text, part
    # The command line: one line, exit code 2 (a usage error), no traceback.
    assert main(["render", str(p), "--config", str(p), "--wav", str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "6 errors" in err and "Traceback" not in err


def test_a_far_off_unknown_key_gets_no_guess(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[bridge]\nzzzzzz = 1\n")
    with pytest.raises(ConfigError) as exc:
        cfg.load(p)
    assert str(exc.value) == f"{p}: bridge.zzzzzz is not a known key (value 1)"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_text("[bridge\n")
    with pytest.raises(ConfigError, match=r"x\.toml: not valid TOML"):
        cfg.load(p)
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read config file"):
        cfg.load(tmp_path / "nope.toml")


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    assert main(["check-config", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[[mappings]]\nmatch='/nn/{run}/loss'\nvelocity = 0\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"trainsound: error: {bad}: mappings[0].velocity must be in 1..127, got 0"


def test_auto_scale_is_a_mapping_key_and_a_bad_one_names_it() -> None:
    rule = {"match": "/nn/{run}/loss", "target": "cc", "scale": "auto", "auto_scale": 0.5}
    assert cfg.from_dict({"mappings": [rule]}).mappings[0].auto_scale == 0.5
    with pytest.raises(ConfigError, match=r"mappings\[0\]\.auto_scale"):
        cfg.from_dict({"mappings": [{**rule, "auto_scale": 0.0}]})


def test_sine_focus_and_bed_gain_are_checked_by_key() -> None:
    assert cfg.from_dict({"sine": {"focus": "all", "bed_gain": 0.2}}).outputs["sine"].focus == "all"
    with pytest.raises(ConfigError, match=r"sine\.focus"):
        cfg.from_dict({"sine": {"focus": "some"}})
