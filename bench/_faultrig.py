"""The fault benchmark's rig: which runs exist, where their recordings live, a real bridge per run, and
the worker that trains a framework's runs one after another (``python bench/_faultrig.py FRAMEWORK …``).

Each run is one real training on CPU sent through its trainsound adapter to a real ``trainsound bridge
--record`` process, so each run becomes a session recording: ``<cache>/<framework>-<fault>-s<seed>-
<schedule>-<steps>.tsr``, with a ``.json`` beside it (the fault's step, the layer it touched, the
seconds it took, the bridge's counters, or the error that stopped it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Framework = Literal["gpt2", "lightning", "torch", "keras"]
FRAMEWORKS: tuple[Framework, ...] = ("gpt2", "lightning", "torch", "keras")
SCHEDULES = ("cosine", "step", "restarts")
#: Fault → the alarm kinds that name it right (issue 22, item 4).
EXPECTED: dict[str, frozenset[str]] = {
    "lr_x10": frozenset({"spike", "exploding"}),
    "lr_x100": frozenset({"spike", "exploding"}),
    "lr_x10_sustained": frozenset({"divergence", "exploding", "spike"}),
    "inputs_x1000": frozenset({"spike"}),
    "labels_shuffled": frozenset({"spike"}),
    "lr_zero": frozenset({"plateau"}),
    "frozen_block": frozenset({"vanishing"}),
    "nan_loss": frozenset({"nan"}),
    "nan_weight": frozenset({"nan"}),
    "exploding_layer": frozenset({"exploding"}),
}
FAULTS = tuple(EXPECTED)
#: Whole-batch corruption, LR spikes and NaN are one-step faults; the rest last from the fault step on.
INPUT_SCALE = 1e3
GRAD_SCALE = 1e3
#: The worker's line for a finished job, followed by JSON (its stdout carries the frameworks' prints too).
DONE = "FAULTRIG-DONE "
DEFAULT_CACHE = Path(__file__).resolve().parent / ".faults-cache"


@dataclass(frozen=True)
class Job:
    """One run: ``fault`` is ``"healthy"`` or a key of :data:`EXPECTED`; the fault hits step ``steps // 2``."""

    framework: Framework
    fault: str
    seed: int
    schedule: str
    steps: int

    @property
    def key(self) -> str:
        return f"{self.framework}-{self.fault}-s{self.seed}-{self.schedule}-{self.steps}"

    @property
    def at(self) -> int:
        return self.steps // 2

    def rec(self, cache: Path) -> Path:
        return cache / f"{self.key}.tsr"

    def meta(self, cache: Path) -> Path:
        return cache / f"{self.key}.json"

    @classmethod
    def parse(cls, text: str) -> Job:
        fw, fault, seed, schedule, steps = text.split(":")
        return cls(fw, fault, int(seed), schedule, int(steps))  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.framework}:{self.fault}:{self.seed}:{self.schedule}:{self.steps}"


def free_port() -> int:
    """A port free for UDP *and* TCP: the bridge listens on both with the same number."""
    for _ in range(100):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind(("127.0.0.1", 0))
            port: int = u.getsockname()[1]
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no port free for both UDP and TCP")


class Bridge:
    """``trainsound bridge --no-midi --record FILE`` as a subprocess on a free port."""

    def __init__(self, record: Path, log: Path, ready_timeout: float = 30.0) -> None:
        from trainsound.bridge.wire.osc import decode_message, encode_message

        self.port = free_port()
        self.record = record
        cmd = [sys.executable, "-m", "trainsound.bridge", "bridge", "--no-midi", "--record", str(record),
               "--listen", f"127.0.0.1:{self.port}", "--stats-interval", "0"]
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.2)
        try:
            deadline = time.monotonic() + ready_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"bridge exited with {self.proc.returncode}; see {self.log.name}")
                try:
                    sock.sendto(encode_message("/trainsound/ping"), ("127.0.0.1", self.port))
                    if decode_message(sock.recvfrom(65536)[0])[0] == "/trainsound/pong":
                        return
                except (TimeoutError, ConnectionRefusedError):
                    pass
            self.stop()
            raise RuntimeError(f"bridge did not answer /trainsound/ping within {ready_timeout:g} s")
        finally:
            sock.close()

    def settle(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the bridge has taken in what was sent (its count stops moving); its counters."""
        from _answers import status

        last, st = -1, None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = status(self.port, 5.0, "bridge status")
            n = st.get("accepted", 0) if st else -1
            if n == last:
                break
            last = n
            time.sleep(0.3)
        return {k: v for k, v in (st or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def train(job: Job, port: int) -> dict[str, Any]:
    """Train one run against the bridge on ``port``; what the fault touched."""
    if job.framework == "keras":
        from _fault_keras import train_keras

        return train_keras(job, port)
    import _fault_torch

    fn = {"gpt2": _fault_torch.train_gpt2, "lightning": _fault_torch.train_lightning,
          "torch": _fault_torch.train_torch}[job.framework]
    return fn(job, port)


def run_job(job: Job, cache: Path) -> dict[str, Any]:
    """One run end to end: bridge up, train, bridge settled and stopped; the meta written beside the recording."""
    rec = job.rec(cache)
    tmp = rec.with_suffix(".part.tsr")
    meta: dict[str, Any] = {"job": asdict(job), "at": job.at, "error": None}
    t0 = time.monotonic()
    bridge = None
    try:
        bridge = Bridge(tmp, rec.with_suffix(".bridge.log"))
        meta.update(train(job, bridge.port))
        meta["train_s"] = round(time.monotonic() - t0, 2)
        meta["bridge"] = bridge.settle()
    except Exception as err:  # a run that fails is reported and the bench goes on
        meta["error"] = f"{type(err).__name__}: {err}"
        meta["traceback"] = traceback.format_exc()[-3000:]
    finally:
        if bridge is not None:
            bridge.stop()
    meta["seconds"] = round(time.monotonic() - t0, 2)
    if tmp.exists():
        tmp.replace(rec)
    job.meta(cache).write_text(json.dumps(meta, indent=1))
    return meta


def worker(argv: list[str] | None = None) -> None:
    """Train the given jobs in this process, one line of JSON on stdout per finished job."""
    ap = argparse.ArgumentParser(description="train fault-benchmark runs (used by bench_faults.py)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("jobs", nargs="+", type=Job.parse)
    args = ap.parse_args(argv)
    make_cache(args.cache)
    for job in args.jobs:
        meta = run_job(job, args.cache)
        print(DONE + json.dumps({"key": job.key, "error": meta["error"], "seconds": meta["seconds"]}), flush=True)


def write_ready(cache: Path) -> Path:
    """``<cache>/READY``: one line per finished recording — ``framework fault seed schedule steps at layer path``."""
    lines = ["# framework fault seed schedule steps fault_step layer recording (steps count optimizer steps from 0)"]
    for meta_path in sorted(cache.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        rec = meta_path.with_suffix(".tsr")
        if meta.get("error") is None and rec.exists():
            j = meta["job"]
            lines.append(" ".join(str(x) for x in (j["framework"], j["fault"], j["seed"], j["schedule"], j["steps"],
                                                    meta["at"], meta.get("layer", "-"), rec.resolve())))
    ready = cache / "READY"
    ready.write_text("\n".join(lines) + "\n")
    return ready


def make_cache(cache: Path) -> None:
    """The cache directory, ignored by git from the inside (the repository's own .gitignore is not ours)."""
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / ".gitignore").exists():
        (cache / ".gitignore").write_text("*\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    worker()
