"""The logdir reader on hostile and changing folders (through the real ``follow`` command)."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

import pytest

pytest.importorskip("tensorboard")
torch = pytest.importorskip("torch")
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

TS = [sys.executable, "-m", "trainsound.bridge"]


def _masked_crc(data: bytes) -> int:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return int(masked_crc32c(data))


def test_a_record_claiming_2_60_bytes_is_warned_about_once_until_the_file_changes(receiver, tmp_path) -> None:
    """Issue 28: the warning said "skipped until it changes" and came back every poll."""
    logdir = tmp_path / "logs"
    w = SummaryWriter(str(logdir / "bad"))
    w.add_scalar("loss", 0.5, 0)
    w.close()
    events = next((logdir / "bad").glob("*tfevents*"))
    header = struct.pack("<Q", 1 << 60)
    with events.open("ab") as fh:  # a well-formed header (its CRC right) that claims 2^60 bytes
        fh.write(header + struct.pack("<I", _masked_crc(header)) + b"\0" * 64)
    proc = subprocess.Popen([*TS, "follow", str(logdir), "--to", f"127.0.0.1:{receiver.port}", "--interval", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        receiver.wait_for(lambda m: ("/nn/bad/loss", (0.5,)) in m, timeout=20)  # what came before is read
        time.sleep(1.5)  # ~30 polls
        with events.open("ab") as fh:  # the file changes: read again, warned again (once)
            fh.write(b"\0" * 8)
        time.sleep(1.5)
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    warnings = [ln for ln in err.splitlines() if "cannot read" in ln]
    assert len(warnings) == 2 and all("skipped until it changes" in ln for ln in warnings), err[-2000:]
    assert "Traceback" not in err


def test_a_run_folder_made_while_following_is_found(receiver, tmp_path) -> None:
    """Folders are listed again only when their mtime moves: a nested run made later is still found."""
    logdir = tmp_path / "logs"
    (logdir / "a").mkdir(parents=True)
    proc = subprocess.Popen([*TS, "follow", str(logdir), "--to", f"127.0.0.1:{receiver.port}", "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # started, its folders listed, idle polls pass
        assert proc.poll() is None
        for name in ("a/deep", "b"):
            w = SummaryWriter(str(logdir / name))
            w.add_scalar("loss", 0.25, 3)
            w.close()
        receiver.wait_for(lambda m: {("/nn/a.deep/loss", (0.25,)), ("/nn/b/loss", (0.25,))} <= set(m), timeout=10)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err
