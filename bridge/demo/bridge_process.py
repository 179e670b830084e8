"""The demo's bridge: ``trainsound bridge`` as a separate process on a free port, ready once it answers ping."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import TrainsoundError
from ..wire.osc import decode_message, encode_message

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class BridgeProcess:
    """``trainsound bridge`` as a separate process, ready once it answers ``/trainsound/ping``."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.port = free_udp_port()
        cmd = [sys.executable, "-m", "trainsound.bridge", "bridge", "--listen", f"127.0.0.1:{self.port}", *args]
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 — lives as long as the process
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-1500:]

    def _wait_ready(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.2)
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise TrainsoundError(f"the bridge exited with {self.proc.returncode}:\n{self._tail()}")
                try:
                    s.sendto(encode_message("/trainsound/ping"), ("127.0.0.1", self.port))
                    data, _ = s.recvfrom(65536)
                    if decode_message(data)[0] == "/trainsound/pong":
                        return
                except (TimeoutError, ConnectionRefusedError):
                    continue
        raise TrainsoundError(f"the bridge did not answer /trainsound/ping within {READY_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """SIGTERM, wait, and insist on a clean exit: only then are its files complete."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TrainsoundError(f"the bridge did not stop within {STOP_TIMEOUT:.0f} s") from None
        finally:
            self._log.close()
        if rc != 0:
            raise TrainsoundError(f"the bridge exited with {rc}:\n{self.log_path.read_text(errors='replace')[-1500:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
