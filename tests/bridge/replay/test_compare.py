"""``trainsound compare``: the first step beyond the tolerance and the largest deviation, per stream and voice
group, on recordings written by the session writer (the real command as a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from faults import healthy

from trainsound.bridge.wire.session import SessionWriter, encode_message


def write(path: Path, run: str, steps: int, first: int = 0, *, fault: int | None = None, extra: str = "") -> Path:
    with open(path, "wb") as fh:
        w = SessionWriter(fh, start=0.0)
        t = 0.0
        for s, msgs in enumerate(healthy(run, steps=steps, seed=3)):
            if s < first:
                continue
            for address, args in msgs:
                if fault is not None and s >= fault and address.endswith("/grad_norm/conv2"):
                    args = [args[0] * 0.5]
                w.write(t, encode_message(address, args))
                t += 0.001
            if extra:
                w.write(t, encode_message(f"/nn/{run}/grad_norm/{extra}", [0.3]))
            t += 0.05
        w.flush()
    return path


def compare(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainsound.bridge", "compare", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_where_two_runs_part_in_json_and_text(tmp_path: Path) -> None:
    a = write(tmp_path / "a.tsr", "new", 80, fault=40, extra="head")
    b = write(tmp_path / "b.tsr", "base", 120, first=10)  # other name, other step range: compared where both are
    p = compare(a, b, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["steps"] == [10, 79] and r["a"]["run"] == "new" and r["b"]["run"] == "base"
    rows = {x["name"]: x for x in r["streams"]}
    conv2 = rows["grad_norm/conv2"]
    assert (conv2["first_step"], conv2["kind"], conv2["steps"]) == (40, "stream", 70)
    assert abs(conv2["max_deviation"] + 0.30103) < 1e-6  # halved: -log10 2
    assert rows["conv2 (grad_norm_notes)"]["kind"] == "group"
    assert rows["conv2 (grad_norm_notes)"]["first_step"] == 40
    assert rows["loss"]["first_step"] is None and rows["loss"]["max_deviation"] == 0.0
    assert r["only_a"] == ["grad_norm/head", "head (grad_norm_notes)"] and r["only_b"] == []
    text = compare(a, b, "--tolerance", "0.5")  # a halving (0.3 decades) is within half a decade
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].endswith("steps 10–79 in common, tolerance 0.5 decades")
    conv2_line = next(x for x in lines if x.startswith("grad_norm/conv2 "))
    assert conv2_line.split()[1] == "—" and "-0.301 at step" in conv2_line
    assert lines[-1] == f"only in {a}: grad_norm/head, head (grad_norm_notes)"


def test_bad_tolerance_and_several_runs_are_one_line(tmp_path: Path) -> None:
    a = write(tmp_path / "a.tsr", "new", 20)
    p = compare(a, a, "--tolerance", "-1")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "trainsound: error: --tolerance must be a number of decades ≥ 0, got -1.0"]
    both = tmp_path / "both.tsr"
    both.write_bytes(a.read_bytes() + write(tmp_path / "c.tsr", "other", 20).read_bytes().split(b"\n", 1)[1])
    p = compare(both, a)
    assert p.returncode == 2
    assert p.stderr.strip() == (f"trainsound: error: {both}: holds 2 runs ('new', 'other'); choose one with --run")
    assert compare(both, a, "--run", "other").returncode == 0
