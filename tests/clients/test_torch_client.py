"""trainsound.watch on the seed CNN, checked against what the real bridge recorded."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import trainsound  # noqa: E402
from trainsound import ClientArgumentError  # noqa: E402
from trainsound.bridge.session import iter_messages  # noqa: E402

pytestmark = pytest.mark.torch

STEPS = 6


def train(
    seed: Any,
    port: int,
    *,
    lr: float = 0.01,
    steps: int = STEPS,
    batch: int = 16,
    explicit_log: bool = False,
    **watch_kw,
) -> tuple[list[float], list[dict[str, float]]]:
    """Train the seed CNN under ``watch``; return the losses and the reference grad norms per step."""
    torch.manual_seed(0)
    model = seed.SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.5)
    x, y = seed.mnist_like(batch * steps)
    losses, norms = [], []
    handle = trainsound.watch(model, port=port, **watch_kw) if port else None
    for i in range(steps):
        opt.zero_grad()
        loss = F.nll_loss(model(x[i * batch : (i + 1) * batch]), y[i * batch : (i + 1) * batch])
        loss.backward()
        norms.append(
            {
                name: torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in getattr(model, name).parameters()]))
                .double()
                .item()
                for name in seed.LAYERS
            }
        )
        opt.step()
        if explicit_log:
            trainsound.log(loss=loss, acc=0.25)
        losses.append(loss.item())
    if handle is not None:
        handle.close()
    return losses, norms


def recorded(bridge_proc, tmp_path: Path, fn) -> list[tuple[str, tuple]]:
    rec = tmp_path / "session.tsr"
    bridge = bridge_proc(["--no-midi", "--record", str(rec)])
    fn(bridge.port)
    bridge.status()  # the bridge answers in arrival order: everything sent before is in
    bridge.stop()
    return [(a, args) for _, a, args in iter_messages(rec)]


def by_step(msgs: list[tuple[str, tuple]], run: str) -> dict[int, dict[str, tuple]]:
    steps: dict[int, dict[str, tuple]] = {}
    current: dict[str, tuple] = {}
    prefix = f"/nn/{run}/"
    for address, args in msgs:
        if not address.startswith(prefix):
            continue
        key = address[len(prefix) :]
        if key == "step":
            current = steps.setdefault(int(args[0]), {})
        current[key] = args
    return steps


def test_every_layer_is_named_and_norms_match_vector_norm(seed, bridge_proc, tmp_path) -> None:
    out: dict[str, object] = {}

    def run(port: int) -> None:
        out["losses"], out["norms"] = train(seed, port, run="cnn")

    msgs = recorded(bridge_proc, tmp_path, run)
    steps = by_step(msgs, "cnn")
    assert sorted(steps) == list(range(STEPS))
    assert ("/nn/cnn/event", ("start",)) in msgs and msgs[-1] == ("/nn/cnn/event", ("end",))
    for i, ref in enumerate(out["norms"]):  # type: ignore[arg-type]
        got = steps[i]
        for layer in seed.LAYERS:
            assert got[f"grad_norm/{layer}"][0] == pytest.approx(ref[layer], rel=1e-5)
            _mean, std, abs_max, norm, ratio = got[f"weight/{layer}"]
            assert norm > 0 and abs_max > 0 and std > 0
            assert ratio == 0.0 if i == 0 else ratio > 0
        assert got["loss"][0] == pytest.approx(out["losses"][i], rel=1e-6)  # type: ignore[index]


def test_weight_statistics_match_the_parameters(seed, receiver) -> None:
    torch.manual_seed(1)
    model = seed.SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = seed.mnist_like(8)

    def flat(n: str) -> Any:
        return torch.cat([p.detach().flatten().clone() for p in getattr(model, n).parameters()])

    with trainsound.watch(model, run="w", port=receiver.port, log=("weights",)):
        for _ in range(2):
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
            if _ == 0:
                first = {n: flat(n) for n in seed.LAYERS}
    after = {n: flat(n) for n in seed.LAYERS}
    msgs = receiver.messages()
    last = {a.rsplit("/", 1)[1]: args for a, args in msgs if "/weight/" in a}
    assert not any("/grad_norm/" in a or a.endswith("/loss") for a, _ in msgs)
    for n in seed.LAYERS:
        w = after[n].double()
        mean, std, abs_max, norm, ratio = last[n]
        assert mean == pytest.approx(w.mean().item(), rel=1e-4, abs=1e-7)
        assert std == pytest.approx(w.std(unbiased=False).item(), rel=1e-4)
        assert abs_max == pytest.approx(w.abs().max().item(), rel=1e-6)
        assert norm == pytest.approx(torch.linalg.vector_norm(w).item(), rel=1e-5)
        expected_ratio = (torch.linalg.vector_norm(w - first[n].double()) / torch.linalg.vector_norm(w)).item()
        assert ratio == pytest.approx(expected_ratio, rel=1e-3)


def test_nan_run_sends_the_nan_event_once(seed, bridge_proc, tmp_path) -> None:
    def run(port: int) -> None:
        torch.manual_seed(0)
        model = seed.SeedCNN()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x, y = seed.mnist_like(16)
        with trainsound.watch(model, run="nan", port=port):
            for i in range(4):
                opt.zero_grad()
                loss = F.nll_loss(model(x), y) * (float("nan") if i >= 2 else 1.0)
                loss.backward()
                opt.step()

    msgs = recorded(bridge_proc, tmp_path, run)
    assert [args for a, args in msgs if a == "/nn/nan/event" and args == ("nan",)] == [("nan",)]
    steps = by_step(msgs, "nan")
    assert math.isnan(steps[2]["loss"][0]) and math.isnan(steps[2]["grad_norm/fc1"][0])
    assert math.isfinite(steps[1]["loss"][0])


def test_training_without_a_bridge_completes_with_identical_losses(seed, closed_port, caplog) -> None:
    caplog.set_level(logging.WARNING)
    bare, _ = train(seed, 0)
    watched, _ = train(seed, closed_port, run="nobody", activations=["conv1"], spectrum_every=1)
    assert watched == bare


def test_explicit_log_attaches_loss_and_metrics_to_the_right_step(seed, receiver) -> None:
    losses, _ = train(seed, receiver.port, run="x", explicit_log=True, steps=3)
    steps = by_step(receiver.messages(), "x")
    assert [steps[i]["loss"][0] for i in range(3)] == pytest.approx(losses, rel=1e-6)
    assert [steps[i]["metric/acc"][0] for i in range(3)] == [0.25] * 3


def test_every_k_reports_every_kth_step_only(seed, receiver) -> None:
    losses, _ = train(seed, receiver.port, run="k", every=2, steps=5)
    steps = by_step(receiver.messages(), "k")
    assert sorted(steps) == [0, 2, 4]
    assert [steps[i]["loss"][0] for i in (0, 2, 4)] == pytest.approx([losses[0], losses[2], losses[4]], rel=1e-6)


def test_activation_spectra_every_k_steps(seed, receiver) -> None:
    train(seed, receiver.port, run="a", activations=["conv1", "conv2"], spectrum_every=2, spectrum_bins=32, steps=4)
    steps = by_step(receiver.messages(), "a")
    for i in range(4):
        has = "activation_spectrum/conv1" in steps[i]
        assert has == (i % 2 == 0)
    blob = steps[2]["activation_spectrum/conv2"][0]
    assert isinstance(blob, bytes) and len(blob) == 32 * 4


def test_close_removes_every_hook_and_restores_backward(seed) -> None:
    model = seed.SeedCNN()
    original_backward = torch.Tensor.backward
    handle = trainsound.watch(model, port=9, activations=["conv1"])
    assert torch.Tensor.backward is not original_backward
    handle.close()
    assert torch.Tensor.backward is original_backward
    assert not model._forward_pre_hooks and not model.conv1._forward_hooks
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

    assert not _global_optimizer_pre_hooks and not _global_optimizer_post_hooks


def test_layers_are_module_paths_in_nested_models(receiver) -> None:
    model = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 26 * 26, 3),
    )
    opt = torch.optim.Adam(model.parameters())
    with trainsound.watch(model, run="seq", port=receiver.port, log="grads"):
        opt.zero_grad()
        model(torch.randn(2, 1, 28, 28)).sum().backward()
        opt.step()
    names = sorted(a.rsplit("/", 1)[1] for a, _ in receiver.messages() if "/grad_norm/" in a)
    assert names == ["0.0", "2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "every must be an integer >= 1, got 0"),
        ({"log": ("grads", "biases")}, "log must name some of ['grads', 'loss', 'weights'], got 'biases'"),
        ({"activations": ["nope"]}, "activations: model has no module named 'nope'"),
        ({"spectrum_bins": 1}, "spectrum_bins must be an integer in 2..4096, got 1"),
        ({"run": ""}, "run must be a non-empty string, got ''"),
        ({"ranks": "some"}, "ranks must be 'zero' or 'all', got 'some'"),
        ({"port": 0}, "port must be an integer in 1..65535, got 0"),
    ],
)
def test_wrong_arguments_fail_in_the_constructor(seed, kwargs, message) -> None:
    with pytest.raises(ClientArgumentError) as err:
        trainsound.watch(seed.SeedCNN(), **kwargs)
    assert str(err.value) == message


def test_watch_rejects_a_non_module() -> None:
    with pytest.raises(ClientArgumentError, match=r"^model must be a torch\.nn\.Module, got list$"):
        trainsound.watch([1, 2])
