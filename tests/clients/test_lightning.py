"""trainsound.lightning.Sonify on a real Lightning Trainer (CPU), checked against what the real bridge recorded."""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")
import torch.nn.functional as F  # noqa: E402
from lightning.pytorch.plugins import MixedPrecision  # noqa: E402

from trainsound import ClientArgumentError  # noqa: E402
from trainsound.lightning import Sonify  # noqa: E402

pytestmark = pytest.mark.torch
LAYERS = ["net.0", "net.2"]  # module paths; the messages name them net.0.Linear, net.2.Linear


class Tiny(pl.LightningModule):
    """A 2-layer MLP that records, per optimizer step, its own pre-clip view of the gradients."""

    def __init__(self, clip: float | None = None, overflow_at: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        self.clip = clip
        self.overflow_at = overflow_at
        self.pre_clip: list[dict[str, float]] = []  # independent per-layer norms, before clipping
        self.total: list[float] = []  # clip_grad_norm_'s own return value: the pre-clip global norm
        self.losses: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_acc", (self.net(x).argmax(1) == y).float().mean())
        self.losses.append(loss.item())
        if self.overflow_at is not None and self.global_step == self.overflow_at and batch_idx == self.overflow_at:
            return loss * float("inf")  # a real overflow: the GradScaler finds inf gradients and skips the step
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: Any = None,
                                    gradient_clip_algorithm: Any = None) -> None:
        self.pre_clip.append({
            name: torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in self.get_submodule(name).parameters()]))
            .double().item() for name in LAYERS})
        if self.clip is not None:
            self.total.append(float(torch.nn.utils.clip_grad_norm_(self.parameters(), self.clip)))


def fit(module: Tiny, port: int, *, batches: int = 6, **trainer_kw: Any) -> pl.Trainer:
    torch.manual_seed(0)
    x, y = torch.randn(8 * batches, 8), torch.randint(0, 2, (8 * batches,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = pl.Trainer(max_epochs=trainer_kw.pop("max_epochs", 1), accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[Sonify(run="pl", port=port, weights_every=1)], **trainer_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's own advice (num_workers, litlogger) is not under test
        trainer.fit(module, loader)
    return trainer


def test_pre_clip_norms_loss_lr_and_metrics_arrive(bridge_recording) -> None:
    module = Tiny(clip=0.01)  # far below the gradients' norm: clipping bites on every step
    msgs = bridge_recording(lambda port: fit(module, port, max_epochs=2))
    steps = bridge_recording.by_step(msgs, "pl")
    assert sorted(steps) == list(range(12))
    assert ("/nn/pl/event", ("start",)) in msgs and msgs[-1] == ("/nn/pl/event", ("end",))
    assert msgs.count(("/nn/pl/event", ("epoch",))) == 1  # entering epoch 1
    for i, got in steps.items():
        assert all(t > 0.01 * 1.5 for t in module.total)  # the clip really scaled the gradients down
        for layer in LAYERS:
            assert got[f"grad_norm/{layer}.Linear"][0] == pytest.approx(module.pre_clip[i][layer], rel=1e-4)
        rss = math.sqrt(sum(got[f"grad_norm/{layer}.Linear"][0] ** 2 for layer in LAYERS))
        assert rss == pytest.approx(module.total[i], rel=1e-4)  # = clip_grad_norm_'s pre-clip global norm
        assert got["metric/grad_norm"][0] == pytest.approx(module.total[i], rel=1e-4)
        assert got["loss"][0] == pytest.approx(module.losses[i], rel=1e-6)
        assert got["metric/lr"][0] == pytest.approx(0.05)
        assert 0.0 <= got["metric/train_acc"][0] <= 1.0
        assert got["step"][1] == i // 6  # the epoch
        assert got["weight/net.0.Linear"][3] > 0


def test_accumulation_gives_one_report_per_optimizer_step(bridge_recording) -> None:
    module = Tiny()
    msgs = bridge_recording(lambda port: fit(module, port, batches=6, accumulate_grad_batches=3))
    steps = bridge_recording.by_step(msgs, "pl")
    assert sorted(steps) == [0, 1]
    for i in (0, 1):  # the norms are those of the gradients summed over the 3 micro-batches
        assert steps[i]["grad_norm/net.2.Linear"][0] == pytest.approx(module.pre_clip[i]["net.2"], rel=1e-4)


def test_an_amp_overflow_is_an_event_skip(bridge_recording) -> None:
    """16-bit AMP on CPU with a real torch.amp.GradScaler; an inf loss makes the scaler skip step 2."""
    module = Tiny(overflow_at=2)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    msgs = bridge_recording(lambda port: fit(module, port, plugins=[plugin]))
    assert msgs.count(("/nn/pl/event", ("skip",))) == 1
    skip_at = msgs.index(("/nn/pl/event", ("skip",)))
    steps = bridge_recording.by_step(msgs, "pl")
    assert sorted(steps) == [0, 1, 2, 3, 4]  # six batches, one skipped optimizer step
    assert [a for a, _ in msgs[:skip_at]].count("/nn/pl/step") == 2
    assert steps[0]["metric/loss_scale"][0] == 65536.0
    assert steps[4]["metric/loss_scale"][0] == 32768.0  # the scaler backed off once
    for _i, got in steps.items():  # unscaled: the scale (65536) is not in the norms
        assert all(math.isfinite(got[f"grad_norm/{layer}.Linear"][0]) for layer in LAYERS)
        assert got["grad_norm/net.2.Linear"][0] < 100
    assert steps[0]["grad_norm/net.2.Linear"][0] == pytest.approx(module.pre_clip[0]["net.2"], rel=1e-4)


class Tutorial(pl.LightningModule):
    """Written the way Lightning's tutorials write it: ``self.log`` of the loss under the usual names, and an
    optimizer with a per-step LR scheduler (issue 22: this made the callback fail on every step)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        self.losses: list[float] = []
        self.lrs: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("loss", loss)
        self.log("train_loss", loss, prog_bar=True)
        self.log("lr", lr)
        self.losses.append(loss.item())
        self.lrs.append(lr)
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=40)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_tutorial_module_sends_the_loss_every_optimizer_step(bridge_recording, caplog, accumulate) -> None:
    module = Tutorial()
    msgs = bridge_recording(lambda port: fit(module, port, batches=20, max_epochs=2,
                                             accumulate_grad_batches=accumulate))
    assert not [r for r in caplog.records if r.name.startswith("trainsound") and r.levelno >= logging.WARNING]
    steps = bridge_recording.by_step(msgs, "pl")
    n = 40 // accumulate
    assert sorted(steps) == list(range(n)) and bridge_recording.status["dropped"] == {}
    for i, got in steps.items():
        micro = module.losses[i * accumulate : (i + 1) * accumulate]
        assert got["loss"][0] == pytest.approx(sum(micro) / accumulate, rel=1e-5)  # the mean over accumulation
        assert got["metric/lr"][0] == pytest.approx(module.lrs[i * accumulate], rel=1e-6)  # the lr the step used
        assert got["metric/loss"][0] == pytest.approx(micro[-1], rel=1e-5)  # what the module logged, by its name
        assert got["metric/train_loss"] == got["metric/loss"]
        assert got["step"][1] == i * accumulate // 20  # the epoch
    assert len({got["metric/lr"][0] for got in steps.values()}) > n // 2  # the scheduler moves it every step


def test_a_failing_callback_logs_one_line_and_the_count_at_the_end(bridge_recording, caplog, monkeypatch) -> None:
    from trainsound import Client
    from trainsound.torch.frame import FrameWatch

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Watch.log() got multiple values for argument 'loss'")

    monkeypatch.setattr(FrameWatch, "attach", broken)
    module = Tutorial()
    clients: list[Client] = []

    def go(port: int) -> None:
        clients.append(Client(port=port, run="pl"))
        torch.manual_seed(0)
        x, y = torch.randn(48, 8), torch.randint(0, 2, (48,))
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             callbacks=[Sonify(run="pl", client=clients[0])])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(module, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8))

    bridge_recording(go)
    lines = [r for r in caplog.records if r.name.startswith("trainsound") and r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in lines] == [  # the first failure, then the count at the end
        "trainsound: Lightning callback failed: TypeError: Watch.log() got multiple values for argument 'loss'; "
        "training goes on (repeats are only counted)",
        "trainsound: run pl: Lightning callback failed 6 times (TypeError)"]
    assert lines[0].exc_info is None  # no traceback
    assert len(module.losses) == 6  # training went on
    assert clients[0].failures.count == 6
    assert clients[0].failures.summary() == "Lightning callback failed 6 times (TypeError)"


def test_wrong_arguments_name_themselves() -> None:
    with pytest.raises(ClientArgumentError, match=r"^every must be an integer >= 1, got 0$"):
        Sonify(every=0)
    with pytest.raises(ClientArgumentError, match=r"^scaler is set by the Lightning callback itself; leave it out$"):
        Sonify(scaler=object())


@pytest.mark.slow
def test_ddp_on_cpu_only_rank_zero_sends(bridge_recording) -> None:
    """strategy="ddp", 2 processes on gloo: one run, one report per optimizer step, from rank 0 only."""
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("lightning_ddp_worker.py")

    def go(port: int) -> None:
        done = subprocess.run([sys.executable, str(worker), str(port)], capture_output=True, text=True, timeout=240,
                              cwd=worker.parent)
        assert done.returncode == 0, done.stderr[-3000:]

    msgs = bridge_recording(go)
    runs = {a.split("/")[2] for a, _ in msgs}
    assert runs == {"ddp"}
    steps = bridge_recording.by_step(msgs, "ddp")
    assert sorted(steps) == [0, 1, 2, 3]  # 64 samples, batch 8, 2 ranks
    assert msgs.count(("/nn/ddp/event", ("start",))) == 1 and msgs.count(("/nn/ddp/event", ("end",))) == 1
    for got in steps.values():
        assert all(math.isfinite(got[f"grad_norm/{layer}.Linear"][0]) and got[f"grad_norm/{layer}.Linear"][0] > 0
                   for layer in LAYERS)
