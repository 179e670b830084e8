"""The fault benchmark's PyTorch runs, written as the frameworks' tutorials write them: a Hugging Face
Trainer GPT-2, a LightningModule CNN, a plain PyTorch MLP loop — with one fault injected at a known step.

Steps count optimizer steps from 0; the fault hits step ``job.at``. Data is generated (seeded) and the
models start from random weights: nothing is downloaded.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from _faultrig import GRAD_SCALE, INPUT_SCALE, Job
from torch import nn

warnings.filterwarnings("ignore")
torch.set_num_threads(1)  # two cores shared by everyone: one for the training, one for its bridge


def lr_lambda(schedule: str, steps: int, warmup: int) -> Callable[[int], float]:
    """The learning-rate factor per step: warmup then cosine, step decay (×0.1 at 1/3 and 2/3), or cosine
    with two restarts (as ``transformers``' ``cosine_with_restarts``, 3 cycles)."""

    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        p = (s - warmup) / max(1, steps - warmup)
        if schedule == "step":
            return 0.1 ** int(3 * s / steps)
        if schedule == "restarts":
            return 0.5 * (1 + math.cos(math.pi * ((3 * p) % 1.0)))
        return 0.5 * (1 + math.cos(math.pi * p))

    return f


class TorchFault:
    """Injects ``job.fault`` into a model at step ``job.at``.

    Args:
        job: the run.
        model: the model the optimizer trains.
        block: module path of the block ``frozen_block`` zeroes and freezes.
        layer: module path of the layer a NaN weight or an exploding gradient hits.
        embed: module whose *input* is the float input (scaled ×1e3 for ``inputs_x1000``).
        head: the output module (its output ×NaN for ``nan_loss``).
    """

    def __init__(self, job: Job, model: nn.Module, block: str, layer: str, embed: nn.Module, head: nn.Module) -> None:
        self.fault, self.at, self.step = job.fault, job.at, -1
        self.model, self.layer = model, block if job.fault == "frozen_block" else layer
        self.module = model.get_submodule(self.layer)
        self._saved: list[float] = []
        if self.fault == "inputs_x1000":
            embed.register_forward_pre_hook(lambda m, a: (a[0] * INPUT_SCALE, *a[1:]) if self._now() else None)
        if self.fault == "nan_loss":
            head.register_forward_hook(lambda m, a, out: out * float("nan") if self._now() else None)

    def _now(self) -> bool:
        return self.step == self.at and torch.is_grad_enabled()

    def begin(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """Before the step's forward pass."""
        self.step = step
        factor = {"lr_x10": 10.0, "lr_x100": 100.0}.get(self.fault) if step == self.at else None
        if step >= self.at and self.fault in ("lr_x10_sustained", "lr_zero"):
            factor = 10.0 if self.fault == "lr_x10_sustained" else 0.0
        if factor is not None:
            self._saved = [g["lr"] for g in optimizer.param_groups]
            for g in optimizer.param_groups:
                g["lr"] *= factor
        if step != self.at:
            return
        with torch.no_grad():
            if self.fault == "nan_weight":
                next(self.module.parameters()).view(-1)[0] = float("nan")
            elif self.fault == "frozen_block":
                for p in self.module.parameters():
                    p.zero_()
                    p.requires_grad_(False)
                    p.grad = None
            elif self.fault == "exploding_layer":
                for p in self.module.parameters():
                    p.register_hook(lambda g: g * GRAD_SCALE)

    def batch(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        """Corrupt a batch in place (``labels_shuffled``: the labels permuted within the batch)."""
        if step == self.at and self.fault == "labels_shuffled":
            y.copy_(y[torch.randperm(len(y))])

    def after_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """After ``optimizer.step()``, before the scheduler's: the learning rate it would have had."""
        for g, lr in zip(optimizer.param_groups, self._saved, strict=False):
            g["lr"] = lr
        self._saved = []


def _info(fault: TorchFault) -> dict[str, Any]:
    return {"layer": fault.layer}


# -- Hugging Face Trainer: a tiny GPT-2 learning to continue a repeated random prefix ----------------------
class CopyTask(torch.utils.data.Dataset):
    """Sequences of a random 8-token prefix repeated: after the first repeat, every token is predictable."""

    def __init__(self, n: int, seq: int, vocab: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        prefix = torch.randint(0, vocab, (n, 8), generator=g)
        self.ids = prefix.repeat(1, seq // 8)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def train_gpt2(job: Job, port: int) -> dict[str, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    from trainsound.transformers import Sonify

    torch.manual_seed(job.seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=32, n_embd=64, n_layer=4, n_head=4,
                                       bos_token_id=None, eos_token_id=None))
    fault = TorchFault(job, model, "transformer.h.1", "transformer.h.2.mlp.c_fc", model.transformer.drop,
                       model.lm_head)

    class InjectFault(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kw: Any) -> None:
            fault.begin(state.global_step, optimizer)

        def on_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kw: Any) -> None:
            fault.after_optimizer(optimizer)

    labels_hook = None
    if job.fault == "labels_shuffled":  # the Trainer hands the batch to the model: corrupt it on the way in
        def shuffle(m: nn.Module, a: tuple[Any, ...], kw: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            if fault.step == fault.at and torch.is_grad_enabled():
                lab = kw["labels"]
                kw["labels"] = lab.view(-1)[torch.randperm(lab.numel())].view_as(lab)
            return a, kw
        labels_hook = model.register_forward_pre_hook(shuffle, with_kwargs=True)
    warmup = job.steps // 10
    args = TrainingArguments(
        output_dir="/tmp/trainsound-bench-faults-hf", max_steps=job.steps, per_device_train_batch_size=16,
        learning_rate=1e-3, warmup_steps=warmup, max_grad_norm=1.0, seed=job.seed, use_cpu=True,
        report_to=[], save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        lr_scheduler_type="cosine_with_restarts" if job.schedule == "restarts" else "cosine",
        lr_scheduler_kwargs={"num_cycles": 3} if job.schedule == "restarts" else {},
    )
    optimizers: tuple[Any, Any] = (None, None)
    if job.schedule == "step":  # no step decay among the Trainer's schedules: hand it one
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        optimizers = (opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda("step", job.steps, warmup)))
    trainer = Trainer(model=model, args=args, train_dataset=CopyTask(2048, 32, 256, job.seed),
                      callbacks=[Sonify(run=job.key, port=port), InjectFault()], optimizers=optimizers)
    trainer.train()
    if labels_hook is not None:
        labels_hook.remove()
    return _info(fault)


# -- Lightning: a small CNN on generated images of four bar orientations --------------------------------
def bars(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy ``size``×``size`` images of a bright bar (horizontal, vertical, two diagonals) at a random place."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, size, size, generator=g) * 0.7
    r = torch.arange(size)
    off = torch.randint(2, size - 2, (n,), generator=g)
    for i in range(n):
        k, o = int(y[i]), int(off[i])
        if k == 0:
            x[i, 0, o, :] += 1.5
        elif k == 1:
            x[i, 0, :, o] += 1.5
        else:
            d = (r + o) % size if k == 2 else (o - r) % size
            x[i, 0, r, d] += 1.5
    return x, y


def train_lightning(job: Job, port: int) -> dict[str, Any]:
    import lightning.pytorch as pl

    from trainsound.lightning import Sonify

    class CNN(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.fc1 = nn.Linear(16 * 4 * 4, 32)
            self.fc2 = nn.Linear(32, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc2(F.relu(self.fc1(x.flatten(1))))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters(), lr=3e-3)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(job.schedule, job.steps, job.steps // 10))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    pl.seed_everything(job.seed, verbose=False)
    model = CNN()
    fault = TorchFault(job, model, "conv2", "fc1", model.conv1, model.fc2)

    class InjectFault(pl.Callback):
        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            fault.begin(trainer.global_step, trainer.optimizers[0])
            fault.batch(trainer.global_step, *batch)
            fault._saved = []  # the LambdaLR sets the next step's rate from scratch: nothing to restore

    x, y = bars(2048, job.seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    trainer = pl.Trainer(max_steps=job.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                         callbacks=[Sonify(run=job.key, port=port), InjectFault()])
    trainer.fit(model, loader)
    return _info(fault)


# -- plain PyTorch: an MLP learning a random teacher's classes -------------------------------------------
class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def train_torch(job: Job, port: int) -> dict[str, Any]:
    import trainsound

    torch.manual_seed(job.seed)
    teacher = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))
    x = torch.randn(4096, 32)
    with torch.no_grad():
        y = teacher(x).argmax(1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)
    model = MLP()
    fault = TorchFault(job, model, "fc2", "fc2", model.fc1, model.fc3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(job.schedule, job.steps, job.steps // 10))
    handle = trainsound.watch(model, run=job.key, port=port)
    step = 0
    try:
        while step < job.steps:
            for xb, yb in loader:
                if step >= job.steps:
                    break
                fault.begin(step, opt)
                fault.batch(step, xb, yb)
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                fault.after_optimizer(opt)
                sched.step()
                step += 1
    finally:
        handle.close()
    return _info(fault)
