"""torch.distributed helpers: who sends, and global norms of sharded parameters.

With ``torch.distributed`` initialised, only rank 0 sends by default. Replicated training (DDP)
needs nothing more: after ``backward`` every rank holds the same averaged gradients. Sharded
training (FSDP / FSDP2, or any scheme where each rank holds a disjoint part of every parameter)
needs every rank's local sums: :func:`reduce_stats` gathers them with **one** collective and
combines them (sums for sums of squares and counts, max for abs-max).

>>> strip_wrappers("module._fsdp_wrapped_module.features.0")
'features.0'
>>> strip_wrappers("")
'root'
>>> rank_run_name("sweep-3", 1, every_rank=True)
'sweep-3.rank1'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["dist_info", "is_sharded", "local", "rank_run_name", "reduce_stats", "strip_wrappers"]

#: Name segments that wrappers (DDP, FSDP, activation checkpointing, torch.compile) insert.
WRAPPER_SEGMENTS = frozenset({"module", "_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod"})


def strip_wrappers(path: str) -> str:
    """A module path without the segments wrappers insert; ``root`` for the model itself."""
    parts = [p for p in path.split(".") if p and p not in WRAPPER_SEGMENTS]
    return ".".join(parts) or "root"


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is unavailable or not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_run_name(run: str, rank: int, every_rank: bool) -> str:
    """The run name a rank sends under: unchanged, or with ``.rank<r>`` when every rank sends."""
    return f"{run}.rank{rank}" if every_rank else run


def is_sharded(model: Any) -> bool:
    """True if any parameter is a DTensor (FSDP2, tensor parallel) or the model is wrapped in FSDP."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - very old torch
        DTensor = ()  # type: ignore[assignment,misc]
    if any(isinstance(p, DTensor) for p in model.parameters()):
        return True
    return any(type(m).__name__ == "FullyShardedDataParallel" for m in model.modules())


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor, or the tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if to_local is not None else t


def reduce_stats(vector: torch.Tensor, max_slices: list[slice], group: Any = None) -> torch.Tensor:
    """Combine per-rank statistics with one ``all_gather``: sum everything except ``max_slices`` (max).

    Args:
        vector: this rank's 1-D float32 vector of sums (of squares, of values, counts) and maxima.
        max_slices: the parts of ``vector`` that are maxima (e.g. abs-max of weights).
        group: process group (default: the world).
    """
    import torch
    import torch.distributed as dist

    world = dist.get_world_size(group)
    flat = torch.empty(world * vector.numel(), dtype=vector.dtype, device=vector.device)
    dist.all_gather_into_tensor(flat, vector.contiguous(), group=group)  # gloo wants a flat output
    gathered = flat.view(world, vector.numel())
    out = gathered.sum(dim=0)
    for sl in max_slices:
        out[sl] = gathered[:, sl].amax(dim=0)
    return out
