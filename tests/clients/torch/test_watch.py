"""trainsound.watch on the seed CNN, checked against what the real bridge recorded."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
from support import by_step

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import trainsound  # noqa: E402
from trainsound import ClientArgumentError  # noqa: E402
from trainsound.bridge.wire.session import iter_messages  # noqa: E402

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


def test_every_layer_is_named_and_norms_match_vector_norm(seed, bridge_proc, tmp_path) -> None:
    out: dict[str, object] = {}

    def run(port: int) -> None:
        out["losses"], out["norms"] = train(seed, port, run="cnn", weights_every=1)

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


def reference_stats(w: Any, prev: Any | None) -> tuple[float, float, float, float, float]:
    """The straightforward per-layer computation, in float64: mean, std, abs-max, norm, update ratio."""
    w = w.double()
    norm = torch.linalg.vector_norm(w).item()
    ratio = 0.0 if prev is None else torch.linalg.vector_norm(w - prev.double()).item() / norm
    return w.mean().item(), w.std(unbiased=False).item(), w.abs().max().item(), norm, ratio


def assert_stats_match(got: tuple, w: Any, prev: Any | None, rel: float = 1e-5) -> None:
    """Within ``rel`` relative; the mean (a sum with cancellation) within ``rel`` of mean(|w|)."""
    mean, std, abs_max, norm, ratio = reference_stats(w, prev)
    assert got[0] == pytest.approx(mean, rel=rel, abs=rel * w.double().abs().mean().item())
    assert got[1] == pytest.approx(std, rel=rel)
    assert got[2] == pytest.approx(abs_max, rel=1e-6)
    assert got[3] == pytest.approx(norm, rel=rel)
    assert got[4] == pytest.approx(ratio, rel=rel)


def flat_layer(model: Any, name: str) -> Any:
    """A copy of all the layer's parameters (weight and bias) as one vector."""
    return torch.cat([p.detach().flatten().clone() for p in model.get_submodule(name).parameters()])


def test_weight_statistics_match_the_per_layer_computation(seed, receiver) -> None:
    torch.manual_seed(1)
    model = seed.SeedCNN()
    with torch.no_grad():
        model.conv1.weight.add_(0.5)  # a layer whose mean is far from 0 (std from sums must hold)
        model.fc2.bias.fill_(-3.0)  # a bias holding the layer's abs-max, negative
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = seed.mnist_like(8)
    snapshots = [{n: flat_layer(model, n) for n in seed.LAYERS}]
    with trainsound.watch(model, run="w", port=receiver.port, log=("weights",), weights_every=1):
        for _ in range(3):
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
            snapshots.append({n: flat_layer(model, n) for n in seed.LAYERS})
    msgs = receiver.messages()
    assert not any("/grad_norm/" in a or a.endswith("/loss") for a, _ in msgs)
    steps = by_step(msgs, "w")
    assert sorted(steps) == [0, 1, 2]
    for i in range(3):
        for n in seed.LAYERS:
            prev = snapshots[i][n] if i else None  # ratio since the previous report; 0 on the first
            assert_stats_match(steps[i][f"weight/{n}"], snapshots[i + 1][n], prev)


def test_weight_statistics_every_tenth_report_by_default(seed, receiver) -> None:
    """Grads and loss every reported step; weights on every 10th, the update ratio over that span."""
    torch.manual_seed(2)
    model = seed.SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    x, y = seed.mnist_like(8)
    snapshots = {}
    with trainsound.watch(model, run="d", port=receiver.port, every=2):
        for i in range(41):
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
            if i % 20 == 0:
                snapshots[i] = {n: flat_layer(model, n) for n in seed.LAYERS}
    steps = by_step(receiver.messages(), "d")
    assert sorted(steps) == list(range(0, 41, 2))
    assert all("loss" in steps[i] and "grad_norm/fc1" in steps[i] for i in steps)
    assert sorted(i for i in steps if "weight/fc1" in steps[i]) == [0, 20, 40]
    for i, prev in ((0, None), (20, 0), (40, 20)):
        for n in seed.LAYERS:
            assert_stats_match(steps[i][f"weight/{n}"], snapshots[i][n], None if prev is None else snapshots[prev][n])


def test_update_ratio_off_sends_zero_and_keeps_no_copy(seed, receiver) -> None:
    model = seed.SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = seed.mnist_like(8)
    with trainsound.watch(model, run="u", port=receiver.port, weights_every=1, update_ratio=False) as h:
        assert h.stats._prev is None
        for _ in range(2):
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
    steps = by_step(receiver.messages(), "u")
    assert [steps[i]["weight/fc1"][4] for i in (0, 1)] == [0.0, 0.0]
    assert steps[1]["weight/fc1"][3] > 0


def test_low_precision_weights_are_summed_in_float32(receiver) -> None:
    """bfloat16 weights: norms and sums accumulate in float32 (bf16 itself holds ~3 digits)."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.Linear(300, 5)).to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    snapshots = [{n: flat_layer(model, n) for n in ("0", "1")}]
    with trainsound.watch(model, run="bf", port=receiver.port, weights_every=1):
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(4, 64, dtype=torch.bfloat16)).float().square().mean().backward()
            opt.step()
            snapshots.append({n: flat_layer(model, n) for n in ("0", "1")})
    steps = by_step(receiver.messages(), "bf")
    for i in (0, 1):
        for n in ("0", "1"):
            assert_stats_match(steps[i][f"weight/{n}.Linear"], snapshots[i + 1][n], snapshots[i][n] if i else None,
                               1e-4)
        assert steps[i]["grad_norm/0.Linear"][0] > 0  # a Sequential's layer: its index and type


def test_abs_max_paths_agree(seed) -> None:
    """The CPU path (one aminmax per tensor) and the fused one used on GPUs (_foreach_norm, ord=inf)."""
    from trainsound.torch.steps import abs_max_fused, extrema

    torch.manual_seed(4)
    params = [p.detach() for p in seed.SeedCNN().parameters()] + [torch.tensor([-7.0, 2.0]), torch.empty(0)]
    zero = torch.zeros(())
    ext = torch.stack(extrema(params, frozenset({len(params) - 1}), zero))
    k = len(params)
    cpu = torch.maximum(ext[:k], -ext[k:])
    fused = torch.stack(abs_max_fused(params, frozenset({len(params) - 1}), zero))[:k]
    assert cpu.tolist() == fused.tolist()
    assert cpu[-2].item() == 7.0 and cpu[-1].item() == 0.0


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


def test_log_tensors_before_and_after_the_step_reach_the_right_step(seed, receiver) -> None:
    """Tensors known at the optimizer step travel in the stats vector; later ones are read at send."""
    torch.manual_seed(0)
    model = seed.SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = seed.mnist_like(16)
    losses = []
    with trainsound.watch(model, run="t", port=receiver.port):
        for i in range(3):
            opt.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()  # the loss tap: known at the step, folded
            trainsound.log(early=torch.tensor([0.5 + i]))
            opt.step()
            trainsound.log(late=torch.tensor(1.5 + i, dtype=torch.float64), plain=2.0)
            losses.append(loss.item())
    steps = by_step(receiver.messages(), "t")
    assert [steps[i]["loss"][0] for i in range(3)] == pytest.approx(losses, rel=1e-6)
    assert [steps[i]["metric/early"][0] for i in range(3)] == [0.5, 1.5, 2.5]
    assert [steps[i]["metric/late"][0] for i in range(3)] == [1.5, 2.5, 3.5]
    assert [steps[i]["metric/plain"][0] for i in range(3)] == [2.0] * 3


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
    assert names == ["0.0.Conv2d", "2.Linear"]  # module paths, a container's index followed by the layer type


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "every must be an integer >= 1, got 0"),
        ({"weights_every": 0}, "weights_every must be an integer >= 1, got 0"),
        ({"weights_every": 2.5}, "weights_every must be an integer >= 1, got 2.5"),
        ({"weights_every": True}, "weights_every must be an integer >= 1, got True"),
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


def mlp_steps(port: int, steps: int, *, epoch_every: int = 0, explicit: dict[int, float] | None = None,
              **watch_kw: Any) -> tuple[list[float], Any]:
    """A plain PyTorch loop on a small MLP, the way tutorials write it; returns each step's loss and the handle."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    handle = trainsound.watch(model, run="mlp", port=port, **watch_kw)
    losses = []
    for i in range(steps):
        if epoch_every and i % epoch_every == 0 and i:
            handle.set_epoch(i // epoch_every)
        opt.zero_grad()
        loss = F.cross_entropy(model(x[i % 8 * 8 : i % 8 * 8 + 8]), y[i % 8 * 8 : i % 8 * 8 + 8])
        loss.backward()
        opt.step()
        if explicit and i in explicit:
            trainsound.log(loss=explicit[i])
        losses.append(loss.item())
    handle.close()
    return losses, handle


def test_set_epoch_keeps_every_later_bundle_whole(bridge_recording) -> None:
    """Issue 22: after ``set_epoch`` the ``step`` message grew an argument but kept its first template's size;
    the bridge dropped 944 of 1,000 steps (``bad_bundle``, ``no_address``). Through a real bridge: all arrive."""
    out: dict[str, list[float]] = {}
    msgs = bridge_recording(lambda port: out.setdefault("losses", mlp_steps(port, 100, epoch_every=25)[0]))
    steps = bridge_recording.by_step(msgs, "mlp")
    assert sorted(steps) == list(range(100))
    assert bridge_recording.status["dropped"] == {}
    assert [steps[i]["step"] for i in (0, 24, 25, 99)] == [(0,), (24,), (25, 1), (99, 3)]
    assert [steps[i]["loss"][0] for i in range(100)] == pytest.approx(out["losses"], rel=1e-6)
    assert [args[0] for a, args in msgs if a == "/nn/mlp/event"] == ["start", "epoch", "epoch", "epoch", "end"]


def test_the_learning_rate_each_step_used_goes_with_it(receiver) -> None:
    """Issue 22: the detectors need the lr (a step decay ticks, lr → 0 is a plateau): a plain loop with a
    scheduler, as the PyTorch tutorials write it, sends the rate each step used, every step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.1)
    with trainsound.watch(model, run="m", port=receiver.port):
        for _ in range(7):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
            sched.step()
    steps = by_step(receiver.messages(), "m")
    assert [steps[i]["metric/lr"][0] for i in range(7)] == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001])


def test_an_explicit_loss_replaces_the_tapped_one_for_its_step_only(receiver) -> None:
    """Issue 22: one ``log(loss=…)`` used to stop the loss taken from ``backward()`` for good."""
    losses, _ = mlp_steps(receiver.port, 6, explicit={2: 42.0})
    steps = by_step(receiver.messages(), "mlp")
    assert [steps[i]["loss"][0] for i in range(6)] == pytest.approx([*losses[:2], 42.0, *losses[3:]], rel=1e-6)


def test_a_metric_named_like_the_loss_stays_a_metric(receiver) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with trainsound.watch(model, run="m", port=receiver.port) as handle:
        for _ in range(3):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            opt.step()
            handle.log(**{"loss ": 7.0, "step": 3.0})  # any name a user may pick
    steps = by_step(receiver.messages(), "m")
    assert sorted(steps) == [0, 1, 2]
    assert all(got["loss"][0] != 7.0 and got["metric/loss_"] == (7.0,) and got["metric/step"] == (3.0,)
               for got in steps.values())


FAILING = """
import sys, torch, trainsound
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
handle = trainsound.watch(model, run="f", port=int(sys.argv[1]))
for i in range(20):
    opt.zero_grad()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    opt.step()
    trainsound.log(note="fast")  # a user's mistake: a metric that is not a number fails every step
handle.close()
print(handle.failures.count, handle.failures.summary())
"""


def test_a_failing_watch_prints_one_line_and_the_count_at_the_end(receiver) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FAILING, str(receiver.port)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines() == ["trainsound: trainsound.watch failed: ValueError: could not convert string "
                                        "to float: 'fast'; training goes on (repeats are only counted)",
                                        "trainsound: run f: trainsound.watch failed 20 times (ValueError)"]
    assert done.stdout.split(maxsplit=1) == ["20", "trainsound.watch failed 20 times (ValueError)\n"]
    assert ("/nn/f/event", ("end",)) in receiver.messages()
