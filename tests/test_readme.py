"""The README's commands follow one convention and run (issue 16 #22): the two bootstrap lines exactly,
``.venv/bin/`` said once, then plain ``trainsound …``, each subcommand and flag known to the real CLI,
and the headless SuperCollider line with the variables the real sclang test needs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BOOTSTRAP = [
    "./bootstrap demo     # installs what the demo needs, then trains five real networks through the bridge and "
    "writes WAV, MIDI, pictures and a gallery",
    "./bootstrap test     # installs everything, then runs ruff, mypy and the whole test suite (real JACK, "
    "FluidSynth, SuperCollider, pyo)",
]


def shell_lines() -> list[str]:
    """Every line of the README's ``sh`` code blocks."""
    return [ln for block in re.findall(r"```sh\n(.*?)```", README, re.S) for ln in block.splitlines()]


def test_the_bootstrap_commands_are_kept_exactly() -> None:
    assert shell_lines()[:2] == BOOTSTRAP


def test_venv_prefix_is_explained_once_then_plain_trainsound() -> None:
    venv = [ln for ln in README.splitlines() if ".venv/bin/" in ln]
    assert len(venv) == 1 and ". .venv/bin/activate" in venv[0], venv
    commands = [ln for ln in shell_lines() if re.match(r"\S*trainsound ", ln)]
    assert commands and all(ln.startswith("trainsound ") for ln in commands), commands


def test_every_trainsound_command_in_the_readme_is_known_to_the_cli() -> None:
    helps: dict[str, str] = {}
    for line in shell_lines():
        if not line.startswith("trainsound "):
            continue
        words = line.split("#", 1)[0].split()
        sub = words[1]
        if sub not in helps:
            r = subprocess.run([sys.executable, "-m", "trainsound.bridge", sub, "--help"], capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, (line, r.stderr)
            helps[sub] = r.stdout
        for flag in re.findall(r"--[a-z][a-z-]*", line.split("#", 1)[0]):
            assert flag in helps[sub], f"{line!r}: {flag} is not an option of trainsound {sub}"


def test_headless_sclang_line_sets_what_the_real_sclang_test_needs() -> None:
    (line,) = [ln for ln in shell_lines() if "sclang" in ln and "QT_QPA_PLATFORM" in ln]
    readme_env = dict(re.findall(r"(\w+)=(\$\([^)]*\)|\S+)", line.split("sclang", 1)[0]))
    assert readme_env == {"QT_QPA_PLATFORM": "offscreen", "QTWEBENGINE_DISABLE_SANDBOX": "1",
                          "XDG_RUNTIME_DIR": "$(mktemp -d)"}
    assert line.endswith("sclang patches/supercollider/trainsound.scd")
    assert (ROOT / "patches/supercollider/trainsound.scd").is_file()
    # tests/patches/test_supercollider.py starts the real sclang with these very variables.
    sc_test = (ROOT / "tests/patches/test_supercollider.py").read_text()
    assert 'QT_QPA_PLATFORM="offscreen"' in sc_test and 'QTWEBENGINE_DISABLE_SANDBOX="1"' in sc_test
    assert "XDG_RUNTIME_DIR=runtime" in sc_test  # a fresh temporary folder, as mktemp -d makes
