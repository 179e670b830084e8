"""Alarms on real training, through the real bridge process (issue 22): small models trained on CPU the way
the frameworks' tutorials write them — a Hugging Face Trainer with warmup, cosine and clipping; a
LightningModule that logs its loss with ``self.log("loss", loss)`` and has a scheduler — healthy, and with a
fault injected at a known step. One fault is one incident, named within ±5 steps; a healthy run, none."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import BridgeProc, free_udp_port, wait_until

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pl = pytest.importorskip("lightning.pytorch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

STEPS = 240
FAULT = 150
TOLERANCE = 5


@pytest.fixture
def bridge() -> Iterator[BridgeProc]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster than two that contend on a shared machine
    b = BridgeProc(["--no-midi"], free_udp_port())
    yield b
    torch.set_num_threads(threads)
    code, err = b.stop()
    assert code == 0, err


def incidents(b: BridgeProc, run: str) -> list[dict[str, Any]]:
    """The run's incidents, once the bridge has taken everything sent (its count stops moving)."""
    seen = [-1]

    def settled() -> bool:
        n = b.status()["accepted"]
        done, seen[0] = n == seen[0], n
        return done

    wait_until(settled, 30, "the bridge to take every message", every=0.3)
    return [i for i in b.status()["alarms"]["recent"] if i["run"] == run]


# -- Hugging Face Trainer: a tiny GPT-2 learning to continue a repeated random prefix ---------------------
class Repeats(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, n: int = 1024) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 64, (n, 8), generator=g).repeat(1, 4)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def train_gpt2(port: int, run: str, fault: Callable[[Any, Any, int], None] | None = None) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    from trainsound.transformers import Sonify

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2))

    class Inject(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if fault is not None:
                fault(kw["model"], kw["optimizer"], state.global_step)

    args = TrainingArguments(output_dir="/tmp/trainsound-test-hf", max_steps=STEPS, per_device_train_batch_size=8,
                             learning_rate=5e-3, warmup_steps=STEPS // 10, lr_scheduler_type="cosine",
                             max_grad_norm=1.0, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Repeats(),
                      callbacks=[Sonify(run=run, port=port), Inject()])
    trainer.train()


def test_a_healthy_trainer_run_with_warmup_and_cosine_raises_no_incident(bridge: BridgeProc) -> None:
    train_gpt2(bridge.port, "gpt-ok")
    assert incidents(bridge, "gpt-ok") == []


def test_a_one_step_learning_rate_spike_is_one_incident_naming_the_loss_jump(bridge: BridgeProc) -> None:
    def spike(model: Any, optimizer: Any, step: int) -> None:
        if step == FAULT:  # the scheduler sets the next step's rate again: a one-step spike
            for g in optimizer.param_groups:
                g["lr"] *= 100.0

    train_gpt2(bridge.port, "gpt-lr", spike)
    [inc] = incidents(bridge, "gpt-lr")
    assert "spike" in inc["kinds"] and inc["name"].startswith("loss spike"), inc
    assert abs(inc["step"] - FAULT) <= TOLERANCE, inc


def test_a_zeroed_frozen_block_is_one_incident_naming_it(bridge: BridgeProc) -> None:
    def freeze(model: Any, optimizer: Any, step: int) -> None:
        if step == FAULT:
            block = model.transformer.h[1]
            with torch.no_grad():
                for p in block.parameters():
                    p.zero_()
            block.requires_grad_(False)

    train_gpt2(bridge.port, "gpt-frozen", freeze)
    [inc] = incidents(bridge, "gpt-frozen")
    assert inc["kind"] == "vanishing" and "h.1" in inc["name"], inc
    assert all(".h.1." in m or m == "group h.1" for m in inc["members"]), inc
    assert abs(inc["step"] - FAULT) <= TOLERANCE, inc


# -- Lightning: a LightningModule as the tutorials write it --------------------------------------------
class LitClassifier(pl.LightningModule):  # type: ignore[misc]
    def __init__(self, lr: float = 3e-3, spike_at: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
        self.lr, self.spike_at = lr, spike_at

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("loss", loss)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.spike_at is not None and self.global_step == self.spike_at:
            for g in self.trainer.optimizers[0].param_groups:
                g["lr"] *= 100.0

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=STEPS)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def fit_lightning(port: int, run: str, spike_at: int | None = None) -> None:
    from trainsound.lightning import Sonify

    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g)
    y = (x[:, :4].argmax(1)).long()  # learnable: the largest of the first four features
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[Sonify(run=run, port=port)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's own advice (num_workers, litlogger, pytree) is not under test
        trainer.fit(LitClassifier(spike_at=spike_at), loader)


def test_a_lightning_module_that_logs_its_loss_is_heard_every_step_and_stays_silent(
        bridge: BridgeProc, capfd: pytest.CaptureFixture[str]) -> None:
    fit_lightning(bridge.port, "lit-ok")
    assert incidents(bridge, "lit-ok") == []
    st = bridge.status()
    assert "Traceback" not in capfd.readouterr().err
    assert st["accepted"] >= STEPS  # the adapter reported (it used to fail at every step)


def test_a_learning_rate_spike_in_lightning_is_named(bridge: BridgeProc) -> None:
    fit_lightning(bridge.port, "lit-lr", spike_at=FAULT)
    [inc] = incidents(bridge, "lit-lr")
    assert abs(inc["step"] - FAULT) <= TOLERANCE and inc["name"].startswith("loss spike"), inc
