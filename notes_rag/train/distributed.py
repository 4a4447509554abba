"""DDP under `torchrun`: this process's rank, joining the process group, and the checks that
keep ranks in step (a common stop after Ctrl-C, identical weights at the end)."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from notes_rag.errors import NotesRagError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup_distributed() -> tuple[Dist, torch.device]:
    """Join a torchrun process group when launched by torchrun; pick the device."""
    if "RANK" not in os.environ:
        return Dist(), torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(leave_distributed)  # after an error; a finished run leaves explicitly
    if torch.cuda.is_available():
        torch.cuda.set_device(d.local_rank)
        return d, torch.device("cuda", d.local_rank)
    return d, torch.device("cpu")


def leave_distributed() -> None:
    """Leave the process group together (a barrier, then destroy). Left to interpreter shutdown,
    gloo's threads could abort a rank after a finished run ("terminate called without an active
    exception", seen in full-suite runs of the DDP test)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when `flag` is true on any rank (so all stop at the same step)."""
    if d.world == 1:
        return flag
    t = torch.tensor([float(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(t: torch.Tensor, d: Dist) -> None:
    """Average `t` in place over the ranks."""
    if d.world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.AVG)


def check_ranks_in_sync(model: torch.nn.Module, console=None) -> None:
    """All ranks must hold the same weights after DDP training; a mismatch is a bug, never silent."""
    total = torch.tensor([sum(float(p.detach().double().sum()) for p in model.parameters())], dtype=torch.float64)
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    values = [float(g) for g in gathered]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise NotesRagError(f"ranks diverged: weight checksums {values}")
    if console is not None:
        console.print(f"ranks in sync: {len(values)} ranks, weight checksum {values[0]:.6f}")
