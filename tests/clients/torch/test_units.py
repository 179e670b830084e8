"""``watch(units=[...])`` (per-unit mean weights) and ``watch(weight_only=True)`` (Perone's norms), on the wire."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import trainsound  # noqa: E402
from trainsound import ClientArgumentError  # noqa: E402
from trainsound.bridge.wire.protocol import MAX_UNITS, parse_event  # noqa: E402
from trainsound.osc import pool_units  # noqa: E402

pytestmark = pytest.mark.torch


def steps_of(msgs: list, run: str) -> list[dict[str, tuple]]:
    out: list[dict[str, tuple]] = []
    for address, args in msgs:
        key = address[len(f"/nn/{run}/") :]
        if key == "step":
            out.append({})
        if out:
            out[-1][key] = args
    return out


def test_weight_only_norms_equal_layer_weight_grad_norm(seed, receiver) -> None:
    torch.manual_seed(0)
    model = seed.SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    x, y = seed.mnist_like(40)
    ref = []
    with trainsound.watch(model, run="p", port=receiver.port, log=("grads",), weight_only=True):
        for i in range(4):
            opt.zero_grad()
            F.nll_loss(model(x[i * 10 : (i + 1) * 10]), y[i * 10 : (i + 1) * 10]).backward()
            # Perone's code, literally: layer.weight.grad.norm()
            ref.append({n: getattr(model, n).weight.grad.norm().item() for n in seed.LAYERS})
            opt.step()
    got = steps_of(receiver.messages(), "p")
    assert len(got) == 4
    for step, want in zip(got, ref, strict=True):
        for layer, norm in want.items():
            assert step[f"grad_norm/{layer}"][0] == pytest.approx(norm, rel=1e-5)
    # ... and not the weight-and-bias norm (the default), which differs measurably for fc2
    with_bias = torch.cat([model.fc2.weight.grad.flatten(), model.fc2.bias.grad.flatten()]).norm().item()
    assert abs(with_bias - ref[-1]["fc2"]) > 1e-5 * with_bias


def test_units_send_one_mean_per_output_unit_with_the_weight_statistics(seed, receiver) -> None:
    torch.manual_seed(0)
    model = seed.SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = seed.mnist_like(8)
    want = []
    with trainsound.watch(model, run="u", port=receiver.port, units=["fc2", "conv1"], weights_every=2):
        for _ in range(5):
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
            w = model.fc2.weight.detach().mean(dim=1).clone(), model.conv1.weight.detach().mean(dim=(1, 2, 3))
            want.append(w)
    msgs = receiver.messages()
    got = steps_of(msgs, "u")
    assert [("weight_units/fc2" in s) for s in got] == [True, False, True, False, True]
    for i in (0, 2, 4):
        fc2 = np.frombuffer(got[i]["weight_units/fc2"][0], "<f4")
        conv1 = np.frombuffer(got[i]["weight_units/conv1"][0], "<f4")
        assert fc2.shape == (10,) and conv1.shape == (20,)
        np.testing.assert_allclose(fc2, want[i][0].numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(conv1, want[i][1].numpy(), rtol=1e-5, atol=1e-7)
        assert "weight/fc2" in got[i]  # the same steps as the weight statistics
    # the bridge's parser accepts what was sent
    address, args = next((a, b) for a, b in msgs if a.endswith("weight_units/fc2"))
    assert parse_event(address, args, 0.0, b"").blob == args[0]


def test_units_of_a_wide_layer_are_pooled_to_the_protocol_cap(receiver) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, MAX_UNITS + 100))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with trainsound.watch(model, run="w", port=receiver.port, units=["0"], log=("weights",)):
        opt.zero_grad()
        model(torch.randn(2, 3)).sum().backward()
        opt.step()
    blob = next(args[0] for a, args in receiver.messages() if a == "/nn/w/weight_units/0.Linear")
    means = np.frombuffer(blob, "<f4")
    assert means.shape == (MAX_UNITS,)
    per_unit = model[0].weight.detach().double().mean(dim=1).numpy()
    np.testing.assert_allclose(means, pool_units(per_unit), rtol=1e-5, atol=1e-7)
    # contiguous groups of one or two units, every unit counted once
    assert means[-1] == pytest.approx(per_unit[-2:].mean(), rel=1e-5)


def test_units_errors_name_the_module(seed) -> None:
    with pytest.raises(ClientArgumentError, match="units: model has no module named 'fc9'"):
        trainsound.watch(seed.SeedCNN(), units=["fc9"], port=9)
    with pytest.raises(ClientArgumentError, match="units: module '' has no weight tensor"):
        trainsound.watch(seed.SeedCNN(), units=[""], port=9)
