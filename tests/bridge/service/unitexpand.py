"""What systemd makes of a unit's command line, by its documented rules (systemd is not PID 1 in the test
container, so ``systemctl show`` cannot be asked). Sources: systemd.unit(5) "Specifiers",
systemd.service(5) "Command lines", systemd.exec(5) ``Environment=``, ``EnvironmentFile=``,
``WorkingDirectory=`` (systemd 252).

- Specifiers (``%h``, ``%%`` …) are expanded in the unit's own settings, at load time — never in the
  contents of an ``EnvironmentFile``.
- ``Environment=`` assignments come first, ``EnvironmentFile=`` assignments override them; an
  environment file's lines are ``KEY=VALUE``, ``#``/``;`` comments, one pair of surrounding quotes
  removed, nothing else expanded.
- In ``ExecStart=``, a word that is exactly ``$VAR`` becomes the value split at whitespace (zero or more
  arguments); ``${VAR}`` becomes the value inside its word; ``$$`` is a ``$``; no shell, no ``~``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Expanded:
    argv: list[str]
    cwd: str | None
    env: dict[str, str]


def read_service(path: Path) -> list[tuple[str, str]]:
    """The ``[Service]`` section's ``(key, value)`` lines in order (keys repeat; continuations joined)."""
    out: list[tuple[str, str]] = []
    section = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def specifiers(text: str, home: str, user: str, runtime_dir: str) -> str:
    """Expand the specifiers a user unit of ours may use; any other one is an error here."""
    table = {"h": home, "u": user, "t": runtime_dir, "%": "%", "E": f"{home}/.config", "S": f"{home}/.local/state"}
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "%":
            spec = text[i + 1 : i + 2]
            if spec not in table:
                raise ValueError(f"specifier %{spec} not known to this check: {text!r}")
            out.append(table[spec])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines, comments skipped, one pair of surrounding quotes removed, nothing expanded."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _expand_word(word: str, env: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(word):
        if word.startswith("$$", i):
            out.append("$")
            i += 2
        elif word.startswith("${", i) and "}" in word[i:]:
            end = word.index("}", i)
            out.append(env.get(word[i + 2 : end], ""))
            i = end + 1
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def _optional_path(value: str, spec: dict[str, str]) -> tuple[str, bool]:
    path = specifiers(value, **spec)
    return path.lstrip("-"), path.startswith("-")


def expand(unit: Path, home: str, user: str, runtime_dir: str, base_env: dict[str, str]) -> Expanded:
    """The argv, working directory and environment systemd would start ``unit``'s ``ExecStart=`` with."""
    lines = read_service(unit)
    env = dict(base_env)
    spec = {"home": home, "user": user, "runtime_dir": runtime_dir}
    for key, value in lines:
        if key == "Environment":
            for assignment in shlex.split(specifiers(value, **spec)):
                k, _, v = assignment.partition("=")
                env[k] = v
    for key, value in lines:
        if key == "EnvironmentFile":
            path, optional = _optional_path(value, spec)
            if Path(path).exists():
                env.update(read_env_file(Path(path).read_text()))
            elif not optional:
                raise FileNotFoundError(path)
    cwd = home  # a user manager's default working directory
    for key, value in lines:
        if key == "WorkingDirectory":
            path, optional = _optional_path(value, spec)
            path = home + path[1:] if path.startswith("~") else path
            if Path(path).is_dir():
                cwd = path
            elif not optional:
                raise FileNotFoundError(path)
    (exec_start,) = [v for k, v in lines if k == "ExecStart"]
    argv: list[str] = []
    for word in shlex.split(specifiers(exec_start, **spec)):
        if word.startswith("$") and not word.startswith(("${", "$$")):
            argv.extend(env.get(word[1:], "").split())
        else:
            argv.append(_expand_word(word, env))
    argv[0] = argv[0].lstrip("-@:+!")
    return Expanded(argv, cwd, env)
