"""The fault benchmark (issue 22 #4) on a tiny subset: a plain PyTorch MLP, one fault, 60 steps, through a real
bridge process — its tables print and parse, its recordings are cached and listed in READY, and a run that
fails is a row that says so while the bench goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _fault_rules
from _fault_eval import Incident, incidents
from _fault_table import parse_tables
from _faultrig import Job, make_cache, run_job

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench(*args: str) -> str:
    r = subprocess.run([sys.executable, str(BENCH / "bench_faults.py"), *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_a_tiny_run_prints_tables_that_parse_and_caches_its_recordings(tmp_path: Path) -> None:
    out = bench("--frameworks", "torch", "--faults", "nan_loss", "--seeds", "0", "--schedules", "cosine",
                "--steps", "60", "--cache", str(tmp_path))
    tables = parse_tables(out)
    assert set(tables) == {"Faults", "Healthy runs", "Summary"}
    (fault,) = tables["Faults"]
    assert (fault["framework"], fault["fault"], fault["loss / grad jump"]) == ("torch", "nan_loss", "inf / inf")
    assert fault["named"] in ("HIT", "miss")
    assert fault["Megatron 10x"] == "+0"  # a NaN loss at the fault's step
    (healthy,) = tables["Healthy runs"]
    assert (healthy["framework"], healthy["schedule"], healthy["seed"]) == ("torch", "cosine", "0")
    assert healthy["Megatron 10x"] == "0"
    assert [r["framework"] for r in tables["Summary"]] == ["torch", "all"]
    ready = (tmp_path / "READY").read_text().splitlines()
    assert sorted(line.split()[1] for line in ready[1:]) == ["healthy", "nan_loss"]
    meta = json.loads((tmp_path / "torch-nan_loss-s0-cosine-60.json").read_text())
    assert meta["error"] is None and meta["at"] == 30 and meta["bridge"]["accepted"] > 60
    again = bench("--frameworks", "torch", "--faults", "nan_loss", "--seeds", "0", "--schedules", "cosine",
                  "--steps", "60", "--cache", str(tmp_path), "--no-train")
    assert "training" not in again.split("###")[0]  # scored from the cache
    assert parse_tables(again)["Faults"][0]["Megatron 10x"] == "+0"


def test_a_run_that_fails_is_recorded_with_its_error(tmp_path: Path) -> None:
    make_cache(tmp_path)
    job = Job("nosuch", "healthy", 0, "cosine", 10)  # type: ignore[arg-type]
    meta = run_job(job, tmp_path)
    assert meta["error"] == "KeyError: 'nosuch'" and "traceback" in meta
    assert json.loads(job.meta(tmp_path).read_text())["error"] == meta["error"]


def test_incidents_read_both_json_formats() -> None:
    old = {"run": "r", "name": "h.1.attn", "kind": "vanishing", "step": 9, "value": 0.0, "time": 1.0}
    new = {"run": "r", "kind": "exploding", "step": 3, "time": 1.0, "name": "exploding in h.3-h.5 (7 layers)",
           "members": ["h.3", "h.4"], "value": 50.0}
    both = {**new, "step": 5, "kind": "spike", "kinds": ["spike", "vanishing"]}
    assert incidents([old, new, both]) == [Incident("exploding", 3, new["name"], ("h.3", "h.4"), ("exploding",)),
                                           Incident("spike", 5, new["name"], ("h.3", "h.4"), ("spike", "vanishing")),
                                           Incident("vanishing", 9, "h.1.attn", ("h.1.attn",), ("vanishing",))]


@pytest.mark.parametrize(("rule", "values", "fires"), [
    ("lightning", [1.0] * 12 + [float("nan")], [12]),
    ("lightning", [3.0, 2.0, 1.5, 1.2, 1.0], []),  # a falling loss is never a spike
    ("megatron", [1.0, 5.0, 9.9], []),
])
def test_the_published_loss_rules(rule: str, values: list[float], fires: list[int]) -> None:
    if rule == "lightning":
        assert _fault_rules.lightning_spike(values) == fires
    else:
        assert _fault_rules.megatron(list(enumerate(values))) == fires


def test_zclip_names_a_grad_norm_jump_and_mosaic_a_sustained_one() -> None:
    norms = [(s, 1.0 + 0.01 * (s % 3)) for s in range(60)]
    norms[40] = (40, 10.0)
    assert _fault_rules.zclip(norms) == [40]
    # ×30 from step 540: the 25-step mean passes 5× the 500-step mean (which holds it too) at its 5th value
    layer = {s: (1.0 if s < 540 else 30.0) for s in range(600)}
    assert _fault_rules.mosaic({"fc": layer})[0] == 544
