"""The framework signals of the plain ``trainsound.watch``: a GradScaler's skipped steps and its loss scale."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import trainsound  # noqa: E402
from trainsound import ClientArgumentError  # noqa: E402

pytestmark = pytest.mark.torch


def test_a_gradscaler_overflow_is_an_event_skip(seed, bridge_recording) -> None:
    """Real fp16 autocast on CPU and a real torch.amp.GradScaler; an inf in one gradient makes it skip."""
    torch.manual_seed(0)
    model = seed.SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu")
    x, y = seed.mnist_like(16 * 5)
    losses: list[float] = []

    def go(port: int) -> None:
        with trainsound.watch(model, run="amp", port=port, scaler=scaler):
            for i in range(5):
                opt.zero_grad()
                with torch.autocast("cpu", dtype=torch.float16):
                    loss = F.nll_loss(model(x[16 * i : 16 * (i + 1)]), y[16 * i : 16 * (i + 1)])
                scaler.scale(loss).backward()
                if i == 2:
                    model.fc2.weight.grad[0, 0] = float("inf")  # an overflow in one gradient
                scaler.step(opt)
                scaler.update()
                losses.append(loss.item())

    msgs = bridge_recording(go)
    assert msgs.count(("/nn/amp/event", ("skip",))) == 1
    steps = bridge_recording.by_step(msgs, "amp")
    assert sorted(steps) == [0, 1, 2, 3]  # five iterations, four optimizer steps
    assert steps[0]["metric/loss_scale"][0] == 65536.0
    assert steps[3]["metric/loss_scale"][0] == 32768.0
    # the loss picked up from backward() is the unscaled one
    assert [steps[k]["loss"][0] for k in range(4)] == pytest.approx([losses[0], losses[1], losses[3], losses[4]],
                                                                    rel=1e-3)


def test_scaler_must_be_a_gradscaler(seed) -> None:
    with pytest.raises(ClientArgumentError, match=r"^scaler must be a torch.amp.GradScaler, got int$"):
        trainsound.watch(seed.SeedCNN(), port=9, scaler=3)
