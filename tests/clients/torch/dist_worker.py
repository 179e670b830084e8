"""Two-process gloo worker for test_distributed.py (run as a script; not collected by pytest).

``python dist_worker.py BRIDGE_PORT OUT_JSON`` spawns 2 ranks on CPU and trains the seed CNN for
3 steps twice: (1) FSDP2 (``fully_shard``): parameters are sharded, ``watch`` detects it and
reduces per-tensor sums with one all_gather, rank 0 sends run ``fsdp`` (weight statistics every
step: ``weights_every=1``); (2) DDP with ``ranks="all"``: each rank sends its own run
``ddp.rank<r>``. Rank 0 writes the reference statistics (an unsharded copy of the model trained
on the same batches) to OUT_JSON.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import trainsound
from trainsound.bridge.demo.models import perone_net

STEPS = 3


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(STEPS)]


def reference(model: nn.Module) -> list[dict[str, list[float]]]:
    """Per step and layer of an unsharded copy: grad norm, weight mean, abs-max, norm, std, update ratio."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    out = []
    prev: dict[str, torch.Tensor] = {}
    for x, y in batches():
        opt.zero_grad()
        F.nll_loss(model(x), y).backward()
        opt.step()
        step = {}
        for name in ("conv1", "conv2", "fc1", "fc2"):
            ps = list(getattr(model, name).parameters())
            g = torch.cat([p.grad.flatten() for p in ps]).double()
            w = torch.cat([p.detach().flatten() for p in ps]).double()
            norm = torch.linalg.vector_norm(w).item()
            ratio = torch.linalg.vector_norm(w - prev[name]).item() / norm if name in prev else 0.0
            prev[name] = w
            step[name] = [
                torch.linalg.vector_norm(g).item(),
                w.mean().item(),
                w.abs().max().item(),
                norm,
                w.std(unbiased=False).item(),
                ratio,
            ]
        out.append(step)
    return out


def work(rank: int, port: int, bridge_port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    base = perone_net()
    ref = reference(copy.deepcopy(base))
    # (1) FSDP2: every rank sees the same batch, so the averaged gradient equals the reference one.
    model = copy.deepcopy(base)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        fully_shard(getattr(model, name))
    fully_shard(model)
    handle = trainsound.watch(model, run="fsdp", port=bridge_port, weights_every=1)
    assert handle.sharded, "FSDP2 parameters must be detected as sharded"
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for x, y in batches():
        opt.zero_grad()
        F.nll_loss(model(x), y).backward()
        opt.step()
    handle.close()
    # (2) DDP, every rank sends under its own run name.
    ddp = DistributedDataParallel(copy.deepcopy(base))
    handle = trainsound.watch(ddp, run="ddp", port=bridge_port, ranks="all", log=("grads",))
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    for x, y in batches():
        opt.zero_grad()
        F.nll_loss(ddp(x), y).backward()
        opt.step()
    handle.close()
    dist.barrier()
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(ref, fh)
    dist.destroy_process_group()


if __name__ == "__main__":
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    torch.set_num_threads(1)
    mp.spawn(work, args=(free, int(sys.argv[1]), sys.argv[2]), nprocs=2)
