"""All-gathers over data-parallel workers that keep BIKE's global-batch loss exact (docs/model.md §6).

The released ``train.py`` gathers every worker's raw frame features before the header and concept spotting,
so that every worker computes the loss over all ``B = batch`` videos. Plain ``torch.distributed``; the
identity without a process group (one worker, inference).
"""
from __future__ import annotations

import torch


class _AllGatherLocalGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward returns the gradient of this rank's own slice (no reduction):
    the released BIKE ``AllGather``. Every rank computes the same global loss, so that slice is exactly
    d(loss)/d(local input); DDP then averages the parameter gradients over ranks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def distributed_world() -> int:
    """Number of processes in the default process group (1 when there is none)."""
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_gather_local_grad(x: torch.Tensor) -> torch.Tensor:
    """(b, ...) on each of W ranks → (W·b, ...) in rank order; identity without a process group.
    Every rank must pass the same ``b``."""
    return _AllGatherLocalGrad.apply(x) if distributed_world() > 1 else x
