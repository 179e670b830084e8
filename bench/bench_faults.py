"""Fault benchmark on real training (issue 22, item 4): are injected faults named right, once, within ±5 steps,
and are healthy runs silent — trainsound's incidents beside four published rules, on the same recordings.

Run: ``.venv/bin/python bench/bench_faults.py`` (``--frameworks gpt2`` for one; ``--fresh`` retrains;
``--no-train`` scores only what is cached). Each run trains a small model on CPU — an HF Trainer GPT-2, a
Lightning CNN, a plain PyTorch MLP loop, a Keras MLP — through its trainsound adapter into a real
``trainsound bridge --record`` process; the recordings are cached in ``bench/.faults-cache/`` (keyed by
framework, fault, seed, schedule, steps), and listed in its ``READY``. Then ``trainsound render REC
--alarms-json`` names the incidents of each recording, and the published rules run on its decoded streams:
Lightning's ``SpikeDetection`` (window 10, rtol 2), Megatron's NaN / 10× the largest loss so far, ZClip's
z-score on an EMA of the global grad norm (α 0.97, z > 2.5), MosaicML's per-layer 25-step over 500-step
average grad norm (> 5×).

A run that fails or hangs prints its error and the bench goes on. Figures only; nothing here is tuned.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fault_eval import Score, score
from _fault_table import print_tables
from _faultrig import DEFAULT_CACHE, DONE, FAULTS, FRAMEWORKS, SCHEDULES, Job, make_cache, write_ready


def jobs_for(framework: str, faults: list[str], seeds: list[int], schedules: list[str], steps: int) -> list[Job]:
    """Every fault once (cosine schedule, seed 0), then the healthy runs: each schedule × each seed."""
    out = [Job(framework, f, seeds[0], "cosine", steps) for f in faults]  # type: ignore[arg-type]
    out += [Job(framework, "healthy", s, sch, steps) for sch in schedules for s in seeds]  # type: ignore[arg-type]
    return out


def train_all(jobs: list[Job], cache: Path, timeout: float) -> None:
    """Train ``jobs`` (one framework) in a worker process; a job silent for ``timeout`` s kills the worker,
    is recorded as failed, and a new worker takes the rest."""
    todo = list(jobs)
    log = open(cache / f"worker-{jobs[0].framework}.log", "a")  # noqa: SIM115 - closed below
    try:
        while todo:
            cmd = [sys.executable, str(Path(__file__).resolve().parent / "_faultrig.py"), "--cache", str(cache),
                   *map(str, todo)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout
            while todo:
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                line = proc.stdout.readline() if ready else None
                if line is None or line == "":
                    why = f"no answer within {timeout:g} s" if line is None else f"worker exited {proc.wait()}"
                    job = todo.pop(0)
                    print(f"  {job.key}: {why}; carrying on", flush=True)
                    job.meta(cache).write_text(json.dumps({"job": asdict(job), "at": job.at, "error": why}))
                    break
                if not line.startswith(DONE):
                    continue
                done = json.loads(line[len(DONE):])
                todo = [j for j in todo if j.key != done["key"]]
                err = f"  ERROR {done['error']}" if done["error"] else ""
                print(f"  trained {done['key']} in {done['seconds']:.1f} s{err}", flush=True)
                deadline = time.monotonic() + timeout
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and the bridge it started: our own group
            proc.wait()
            proc.stdout.close()
    finally:
        log.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated (default: all four)")
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated (default: all; '' for none)")
    ap.add_argument("--seeds", default="0,1", help="healthy runs' seeds (the faults use the first)")
    ap.add_argument("--schedules", default=",".join(SCHEDULES), help="healthy runs' schedules")
    ap.add_argument("--steps", type=int, default=400, help="optimizer steps per run; the fault hits the middle one")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="recordings directory")
    ap.add_argument("--fresh", action="store_true", help="retrain even what is cached")
    ap.add_argument("--no-train", action="store_true", help="score only the recordings already cached")
    ap.add_argument("--config", type=Path, help="bridge TOML for render (default: the built-in one)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds a run may take before it is given up")
    ap.add_argument("--render-timeout", type=float, default=120.0, help="seconds per render --alarms-json")
    args = ap.parse_args(argv)
    frameworks = [f for f in args.frameworks.split(",") if f]
    faults = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS)) + sorted(set(faults) - set(FAULTS))
    if unknown:
        ap.error(f"unknown framework or fault: {', '.join(unknown)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    make_cache(args.cache)
    t0 = time.monotonic()
    print(f"fault benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {args.steps} steps per "
          f"run, fault at step {args.steps // 2}, cache {args.cache}", flush=True)
    all_jobs: list[Job] = []
    for fw in frameworks:
        jobs = jobs_for(fw, faults, seeds, args.schedules.split(","), args.steps)
        all_jobs += jobs
        todo = [j for j in jobs if args.fresh or not (j.rec(args.cache).exists() and j.meta(args.cache).exists())]
        if todo and not args.no_train:
            print(f"{fw}: training {len(todo)} run(s) ({len(jobs) - len(todo)} cached)", flush=True)
            train_all(todo, args.cache, args.timeout)
            write_ready(args.cache)
    trained = time.monotonic() - t0
    scores: list[Score] = []
    counts = {"accepted": 0, "dropped_total": 0, "kernel_drops": 0}
    for job in all_jobs:
        meta_path = job.meta(args.cache)
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        for k in counts:
            counts[k] += meta.get("bridge", {}).get(k, 0)
        scores.append(score(job.rec(args.cache), meta, args.render_timeout, args.config))
    print_tables(scores)
    print(f"\n{len(scores)} run(s); training {trained:.0f} s, scoring {time.monotonic() - t0 - trained:.0f} s; the "
          f"bridges accepted {counts['accepted']} messages, dropped {counts['dropped_total']} (kernel "
          f"{counts['kernel_drops']})")


if __name__ == "__main__":
    main()
