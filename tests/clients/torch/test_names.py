"""Layer names a person reads: a container's index gets its module's type (clients/torch/names.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import trainsound  # noqa: E402
from trainsound.bridge.mapping.groups import GroupOptions, depth_index, plan  # noqa: E402
from trainsound.bridge.wire.protocol import parse_event  # noqa: E402

pytestmark = pytest.mark.torch


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16))
        self.fc1 = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.features(x))


def test_sequential_layers_are_named_by_index_and_type_named_modules_keep_their_names(receiver) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with trainsound.watch(model, run="n", port=receiver.port, activations=["features.0"], spectrum_every=1,
                          units=["features.2"], weights_every=1):
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(4, 8)).square().mean().backward()
            opt.step()
    msgs = receiver.messages()
    grads = sorted({a.rsplit("/", 1)[1] for a, _ in msgs if "/grad_norm/" in a})
    assert grads == ["fc1", "features.0.Linear", "features.2.Linear"]
    assert any(a == "/nn/n/activation_spectrum/features.0.Linear" for a, _ in msgs)
    assert any(a == "/nn/n/weight_units/features.2.Linear" for a, _ in msgs)
    # The bridge takes every one as a layer of the protocol, and voice groups still see the depth.
    for a, args in msgs:
        if "/grad_norm/" in a:
            assert parse_event(a, args, 0.0, b"").name in grads
    assert depth_index("features.2.Linear") == ("features", 2)
    lay = plan([f"{i}.Linear" for i in range(0, 40, 2)], GroupOptions(max_voices=4))
    assert lay.names[0].startswith("0") and len(lay.names) == 4, lay.names
