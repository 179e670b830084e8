"""trainsound.transformers.Sonify on a real Hugging Face Trainer (CPU, a tiny random GPT-2, nothing downloaded)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from trainsound.transformers import Sonify  # noqa: E402

pytestmark = pytest.mark.torch


class Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, n: int) -> None:
        self.ids = torch.randint(0, 100, (n, 16), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class PreClip(transformers.TrainerCallback):  # type: ignore[misc]
    """Independent per-layer norms of the gradients the Trainer is about to clip (rescaled back: see below)."""

    def __init__(self, model: Any, names: list[str]) -> None:
        self.model, self.names, self.seen = model, names, []

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seen.append({n: torch.linalg.vector_norm(torch.cat(
            [p.grad.flatten() for p in self.model.get_submodule(n).parameters(recurse=False)])).double().item()
            for n in self.names})


def train(port: int, *, accumulation: int = 1, steps: int = 3, max_grad_norm: float = 0.1,
          **kw: Any) -> tuple[Any, PreClip]:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    probe = PreClip(model, ["transformer.h.0.mlp.c_fc", "transformer.h.1.attn.c_attn", "transformer.ln_f"])
    args = transformers.TrainingArguments(
        output_dir=kw.pop("output_dir"), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
        per_device_train_batch_size=4, gradient_accumulation_steps=accumulation, max_steps=steps, logging_steps=1,
        max_grad_norm=max_grad_norm, learning_rate=1e-3, **kw)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(64), eval_dataset=Tokens(8),
                                   callbacks=[Sonify(run="hf", port=port, weights_every=1), probe])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny config's own complaints are not under test
        trainer.train()
    return trainer, probe


def run_and_read(bridge_recording, tmp_path, **kw: Any) -> tuple[dict[int, dict[str, tuple]], Any, PreClip, list]:
    out: dict[str, Any] = {}

    def go(port: int) -> None:
        out["trainer"], out["probe"] = train(port, output_dir=str(tmp_path / "out"), **kw)

    msgs = bridge_recording(go)
    return bridge_recording.by_step(msgs, "hf"), out["trainer"], out["probe"], msgs


def test_pre_clip_norms_sum_to_the_trainers_grad_norm(bridge_recording, tmp_path) -> None:
    steps, trainer, probe, msgs = run_and_read(bridge_recording, tmp_path, eval_strategy="steps", eval_steps=3)
    history = [h for h in trainer.state.log_history if "grad_norm" in h]
    assert sorted(steps) == [0, 1, 2] and len(history) == 3
    assert ("/nn/hf/event", ("start",)) in msgs and msgs[-1] == ("/nn/hf/event", ("end",))
    for i, got in steps.items():
        trainer_norm = history[i]["grad_norm"]  # the Trainer's own pre-clip global norm
        assert trainer_norm > 0.1 * 2  # max_grad_norm=0.1: clipping bites
        layers = [k for k in got if k.startswith("grad_norm/")]
        assert len(layers) == 2 + 2 * 6 + 1  # wte, wpe, 6 per block, ln_f (lm_head is tied to wte)
        rss = math.sqrt(sum(got[k][0] ** 2 for k in layers))
        assert rss == pytest.approx(trainer_norm, rel=1e-4)
        assert got["metric/grad_norm"][0] == pytest.approx(trainer_norm, rel=1e-4)
        # what the Trainer saw at on_pre_optimizer_step is clipped: scaled by max_norm / pre-clip norm
        factor = 0.1 / (trainer_norm + 1e-6)
        for name, clipped in probe.seen[i].items():
            assert got[f"grad_norm/{name}"][0] == pytest.approx(clipped / factor, rel=1e-4)
        assert got["loss"][0] == pytest.approx(history[i]["loss"], rel=1e-5)
        assert got["metric/lr"][0] == pytest.approx(history[i]["learning_rate"], rel=1e-6)
        assert got["weight/transformer.h.0.mlp.c_fc"][3] > 0
    assert steps[2]["metric/eval_loss"][0] == pytest.approx(trainer.state.log_history[-2]["eval_loss"], rel=1e-6)


def test_accumulation_gives_one_report_per_optimizer_step(bridge_recording, tmp_path) -> None:
    steps, trainer, probe, _ = run_and_read(bridge_recording, tmp_path, accumulation=4, steps=2, max_grad_norm=0.0)
    history = [h for h in trainer.state.log_history if "grad_norm" in h]
    assert sorted(steps) == [0, 1]
    for i, got in steps.items():  # no clipping: the probe sees the summed gradients as they are
        for name, norm in probe.seen[i].items():
            assert got[f"grad_norm/{name}"][0] == pytest.approx(norm, rel=1e-4)
        assert got["metric/grad_norm"][0] == pytest.approx(history[i]["grad_norm"], rel=1e-4)
        assert got["loss"][0] == pytest.approx(history[i]["loss"], rel=1e-5)


class Repeats(torch.utils.data.Dataset):  # type: ignore[misc]
    """A learnable task: a random 8-token prefix repeated (TESTING.md), so the loss really falls."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 500, (n, 8), generator=g).repeat(1, 2)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Reference(transformers.Trainer):  # type: ignore[misc]
    """The Trainer as users run it, plus what the test compares against: each micro-batch's loss as the
    Trainer adds it up (``training_step``'s return), and a NaN in the loss's value at one step."""

    def __init__(self, *args: Any, nan_at: int = -1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nan_at, self.micro, self.lrs = nan_at, [], []

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
                     ) -> Any:
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.state.global_step == self.nan_at:  # the value only: the gradients stay finite
            loss = loss + torch.tensor(float("nan"))
        return loss

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        loss = super().training_step(*args, **kwargs)
        self.micro.append((self.state.global_step, loss.item()))
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        return loss


def test_the_loss_arrives_every_optimizer_step(bridge_recording, tmp_path) -> None:
    """Issue 22: the loss went out only at ``on_log`` (every ``logging_steps``), and 0.0 after a NaN. Here the
    loss of every step, averaged over 2 micro-batches as the Trainer reports it, through the real bridge."""
    out: dict[str, Any] = {}
    accumulation = 2

    def go(port: int) -> None:
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(
            transformers.GPT2Config(vocab_size=500, n_positions=64, n_embd=64, n_layer=4, n_head=4))
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
            per_device_train_batch_size=2, gradient_accumulation_steps=accumulation, max_steps=60,
            logging_steps=50, learning_rate=3e-3, warmup_steps=6, lr_scheduler_type="cosine")
        trainer = Reference(model=model, args=args, train_dataset=Repeats(240), nan_at=30,
                            callbacks=[Sonify(run="hf", port=port)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
        out["trainer"] = trainer

    msgs = bridge_recording(go)
    trainer = out["trainer"]
    steps = bridge_recording.by_step(msgs, "hf")
    assert sorted(steps) == list(range(60)) and bridge_recording.status["dropped"] == {}
    expected = [sum(v for s, v in trainer.micro if s == i) for i in range(60)]
    got = [steps[i]["loss"][0] for i in range(60)]
    assert math.isnan(got[30]) and math.isnan(expected[30])  # the real value of the step, not 0.0
    assert got[:30] + got[31:] == pytest.approx(expected[:30] + expected[31:], rel=1e-5)
    assert got[49] != pytest.approx(trainer.state.log_history[0]["loss"])  # not the logged 50-step mean
    lrs = [steps[i]["metric/lr"][0] for i in range(60)]
    assert lrs == pytest.approx(trainer.lrs[::accumulation], rel=1e-6)  # warmup, then cosine, every step
    assert max(lrs) == pytest.approx(3e-3) and lrs.index(max(lrs)) == 6
    assert all(math.isfinite(steps[i]["metric/grad_norm"][0]) for i in range(60))
