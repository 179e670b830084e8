"""A real 2-process gloo group on CPU: FSDP2-sharded norms are global; DDP with ranks="all"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
from trainsound.bridge.wire.session import iter_messages

pytestmark = [pytest.mark.torch, pytest.mark.slow]

WORKER = Path(__file__).with_name("dist_worker.py")


def test_two_rank_gloo_group_sends_global_norms(bridge_proc, tmp_path) -> None:
    rec, out = tmp_path / "dist.tsr", tmp_path / "ref.json"
    bridge = bridge_proc(["--no-midi", "--record", str(rec)])
    run = subprocess.run(
        [sys.executable, str(WORKER), str(bridge.port), str(out)], capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr[-3000:]
    bridge.status()
    bridge.stop()
    ref = json.loads(out.read_text())
    msgs = [(a, args) for _, a, args in iter_messages(rec)]
    runs = {a.split("/")[2] for a, _ in msgs}
    assert runs == {"fsdp", "ddp.rank0", "ddp.rank1"}  # FSDP: only rank 0 sends
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        grads = [args[0] for a, args in msgs if a == f"/nn/fsdp/grad_norm/{layer}"]
        weights = [args for a, args in msgs if a == f"/nn/fsdp/weight/{layer}"]
        assert grads == pytest.approx([step[layer][0] for step in ref], rel=1e-5)
        assert [w[0] for w in weights] == pytest.approx([step[layer][1] for step in ref], rel=1e-3, abs=1e-6)
        assert [w[2] for w in weights] == pytest.approx([step[layer][2] for step in ref], rel=1e-5)
        assert [w[3] for w in weights] == pytest.approx([step[layer][3] for step in ref], rel=1e-5)
        assert [w[1] for w in weights] == pytest.approx([step[layer][4] for step in ref], rel=1e-5)
        assert [w[4] for w in weights] == pytest.approx([step[layer][5] for step in ref], rel=1e-5)
        for rank in (0, 1):  # DDP: replicated gradients, every rank the same global norm
            ddp = [args[0] for a, args in msgs if a == f"/nn/ddp.rank{rank}/grad_norm/{layer}"]
            assert ddp == pytest.approx([step[layer][0] for step in ref], rel=1e-5)
