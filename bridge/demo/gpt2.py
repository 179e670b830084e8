"""The demo's transformer: a small GPT-2 (Hugging Face ``transformers``), random init, nothing downloaded.

``GPT2Config(vocab_size=500, n_positions=64, n_embd=64, n_layer=4, n_head=4)`` learns a synthetic
language (each sequence counts up from a random token with a random stride, modulo the vocabulary), so the
loss falls from ln 500 ≈ 6.2 and the 27 layers with parameters give the bridge a real model's names
(``transformer.h.{i}.attn.c_attn`` …) to group. Trained in plain PyTorch through ``trainsound.watch``.
"""

from __future__ import annotations

import os
from typing import Any

from .loop import Progress, train_steps
from .models import Data, RunSpec

VOCAB = 500
CONTEXT = 64
#: The issue's configuration (issue 11): small enough for a CPU demo, shaped like GPT-2.
CONFIG: dict[str, Any] = {"vocab_size": VOCAB, "n_positions": CONTEXT, "n_embd": 64, "n_layer": 4, "n_head": 4,
          "bos_token_id": 0, "eos_token_id": 0}


def batches(n: int, batch: int, seed: int) -> Any:
    """``n`` batches of counting sequences: token ``(start + k·stride) mod VOCAB`` at position ``k``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    k = torch.arange(CONTEXT)
    for _ in range(n):
        start = torch.randint(0, VOCAB, (batch, 1), generator=g)
        stride = torch.randint(1, 8, (batch, 1), generator=g)
        yield (start + stride * k) % VOCAB


#: The demo's run (``--runs gpt2-small``): 27 layers with parameters, heard as voice groups.
RUN = RunSpec("gpt2-small", "torch", "gpt2", "adam", 1e-3, batch=16, steps=200,
              listen_for="voices low to high: the embeddings, the four blocks, the head; the loss brightness falls")


def train(spec: RunSpec, data: Data, progress: Progress | None = None, *, port: int | None = None) -> list[float]:
    """:func:`.models.train` for the GPT-2 run (``data`` is not used: the sequences are made here)."""
    return train_gpt2(spec.name, spec.steps, spec.lr, spec.batch, progress, port=port)


def train_gpt2(name: str, steps: int, lr: float, batch: int, progress: Any = None, *, port: int | None = None,
               seed: int = 9) -> list[float]:
    """Train the small GPT-2 for ``steps`` steps (AdamW), every step through ``trainsound.watch``; the losses."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    import trainsound

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(seed)
    hf_logging.set_verbosity_error()  # its config notices would break the demo's progress line
    model = GPT2LMHeadModel(GPT2Config(**CONFIG))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    handle = trainsound.watch(model, run=name, every=1, log=("grads", "weights", "loss"), optimizer=opt,
                              host="127.0.0.1", port=port)
    return train_steps(handle, opt, batches(steps, batch, seed), lambda ids: model(input_ids=ids, labels=ids).loss,
                       progress, lr=lr)
