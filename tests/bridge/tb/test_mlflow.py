"""``trainsound follow mlflow:URI`` and ``render mlflow:URI`` against a real ``mlflow server`` (sqlite store),
logged to with MLflow's real client, heard by a plain UDP receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support import free_udp_port, wait_until

pytest.importorskip("mlflow.server", reason="the full mlflow package (its server) is a test dependency")

TS = [sys.executable, "-m", "trainsound.bridge"]
LOGGER = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment(sys.argv[2])
with mlflow.start_run(run_name=sys.argv[3]) as run:
    print(run.info.run_id, flush=True)
    for line in sys.stdin:  # one step a line: "STEP key=value ..."; stdin closed: the run finishes
        step, *pairs = line.split()
        mlflow.log_metrics({k: float(v) for k, v in (p.split("=") for p in pairs)}, step=int(step))
        print("ok", flush=True)
"""


class Server:
    """A real ``mlflow server`` on a free port, its sqlite store in ``where``; restartable on the same port."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.port = free_udp_port()  # free for TCP too on loopback in practice; checked by the start
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.where / "server.log").open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                 f"sqlite:///{self.where}/mlflow.db", "--default-artifact-root", str(self.where / "artifacts"),
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                cwd=self.where, stdout=log, stderr=log, start_new_session=True)
        wait_until(self._healthy, 90, "mlflow server /health")

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.where / "server.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    s = Server(tmp_path_factory.mktemp("mlflow"))
    s.start()
    yield s
    s.stop()


class Training:
    """A process logging to the server with MLflow's client, a step when told."""

    def __init__(self, server: Server, experiment: str, name: str) -> None:
        env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        self.proc = subprocess.Popen([sys.executable, "-c", LOGGER, server.uri, experiment, name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        self.run_id = self.proc.stdout.readline().strip()
        assert len(self.run_id) == 32, self.run_id

    def log(self, step: int, **values: float) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{step} " + " ".join(f"{k.replace('__', '/')}={v!r}" for k, v in values.items()) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def finish(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(60) == 0
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_for(receiver, pred, timeout: float) -> list:  # type: ignore[no-untyped-def]
    return receiver.wait_for(pred, timeout)  # type: ignore[no-any-return]


def test_follow_hears_runs_logged_while_it_runs_and_a_server_restart(server: Server, receiver, tmp_path) -> None:
    exp = "follow-live"
    first = Training(server, exp, "sgd-0.1")
    first.log(0, loss=2.0, lr=0.125, grad_norm__fc1=1.5)  # before follow starts: a RUNNING run's history is sent
    follow = subprocess.Popen([*TS, "follow", f"mlflow:{server.uri}", "--experiment", exp, "--to",
                               f"127.0.0.1:{receiver.port}", "--interval", "0.5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(receiver, lambda m: ("/nn/sgd-0.1/loss", (2.0,)) in m, timeout=60)  # includes follow's start
        t0 = time.monotonic()
        first.log(1, loss=1.25, lr=0.0625, grad_norm__fc1=0.75)
        got = wait_for(receiver, lambda m: ("/nn/sgd-0.1/loss", (1.25,)) in m, timeout=10)
        assert time.monotonic() - t0 < 10
        # Exact values, the step MLflow was given, the tag table's names.
        assert ("/nn/sgd-0.1/step", (1,)) in got and ("/nn/sgd-0.1/metric/lr", (0.0625,)) in got
        assert ("/nn/sgd-0.1/grad_norm/fc1", (0.75,)) in got and ("/nn/sgd-0.1/event", ("start",)) in got

        second = Training(server, exp, "adam-1e-3")  # a new run appears while following
        second.log(5, loss=0.5, accuracy=0.25)
        got = wait_for(receiver, lambda m: ("/nn/adam-1e-3/loss", (0.5,)) in m, timeout=10)
        assert ("/nn/adam-1e-3/step", (5,)) in got and ("/nn/adam-1e-3/metric/accuracy", (0.25,)) in got
        second.log(6, loss=0.375)
        second.finish()  # a finished run: its voices released
        wait_for(receiver, lambda m: ("/nn/adam-1e-3/event", ("end",)) in m, timeout=10)

        server.stop()  # the server goes away mid-follow (the training waits) ...
        time.sleep(2.0)
        assert follow.poll() is None
        server.start()  # ... and comes back, with the same store
        first.log(2, loss=0.875)
        got = wait_for(receiver, lambda m: ("/nn/sgd-0.1/loss", (0.875,)) in m, timeout=30)
        assert [a for a, v in got if a == "/nn/sgd-0.1/loss"] == ["/nn/sgd-0.1/loss"] * 3  # each step once
        first.finish()
        wait_for(receiver, lambda m: ("/nn/sgd-0.1/event", ("end",)) in m, timeout=10)
    finally:
        follow.terminate()
        _, err = follow.communicate(timeout=20)
    assert follow.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if "trying again" in ln or "answers again" in ln]
    assert len(lines) == 2, err[-3000:]  # one line when it went away, one when it came back


def test_render_and_once_of_a_finished_run(server: Server, receiver, tmp_path) -> None:
    t = Training(server, "render", "finished")
    for i in range(40):
        t.log(i, loss=2.0 * 0.9**i, grad_norm__fc1=1.0 + 0.1 * i)
    t.finish()
    wav = tmp_path / "run.wav"
    r = subprocess.run([*TS, "render", f"mlflow:{server.uri}", "--run", "finished", "--wav", str(wav)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "rendered 121 messages" in r.stderr  # start + 40 × (step, loss, grad_norm)
    audio, sr = sf.read(wav)
    assert len(audio) >= 40 / 8 * sr and np.isfinite(audio).all() and np.abs(audio).max() > 1e-3

    done = subprocess.run([*TS, "follow", f"mlflow:{server.uri}", "--run", t.run_id, "--once", "--to",
                           f"127.0.0.1:{receiver.port}", "--steps-per-second", "200"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "follow: 40 step(s) from 1 run(s) sent" in done.stderr
    got = receiver.messages()
    losses = [v[0] for a, v in got if a == "/nn/finished/loss"]
    assert losses == [float(np.float32(2.0 * 0.9**i)) for i in range(40)]


def test_bad_mlflow_input_is_one_line(server: Server) -> None:
    r = subprocess.run([*TS, "follow", f"mlflow:{server.uri}", "--run", "no-such-run", "--once"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
        f"trainsound: error: mlflow: no run named or with ID 'no-such-run' on {server.uri}")
    r = subprocess.run([*TS, "follow", "mlflow:", "--once"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "trainsound: error: mlflow: needs a tracking URI, e.g. mlflow:http://127.0.0.1:5000"]
