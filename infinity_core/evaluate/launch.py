"""Which cells a process makes: all of them (one process), one share of a job array (--shard K/N,
for launchers such as a Slurm array), or one rank's share of a torchrun launch.

Cell i of the plan belongs to share i mod N however the shares are launched, so each share is
resumable on its own, and rank K-1 of N torchrun ranks makes exactly what `--shard K/N` makes.
The ranks of a torchrun launch join through torch.distributed (gloo on CPU, NCCL on GPUs, any
number of machines through torchrun's rendezvous) and meet only twice: rank 0 first writes what
every rank reads (the --tiny model set), and at the end each waits for all before rank 0 merges
the parts and writes the report.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import torch

from ..errors import InfinityError
from .folder import CSV_NAME, part_path

# The last meeting waits for the slowest rank: on a mix of GPUs that can be hours after the fastest.
_WAIT = timedelta(hours=24)


@dataclass(frozen=True)
class Launch:
    index: int = 0  # this process's share, 0-based
    count: int = 1  # shares
    kind: str = "single"  # "single", "shard" (--shard K/N) or "torchrun"

    def owns(self, cell: int) -> bool:
        return cell % self.count == self.index

    @property
    def leads(self) -> bool:
        """Writes the report (and shows the whole run's progress): a lone process, or rank 0."""
        return self.kind == "single" or (self.kind == "torchrun" and self.index == 0)

    @property
    def label(self) -> str:
        return {"single": "", "shard": f"shard {self.index + 1}/{self.count}",
                "torchrun": f"rank {self.index} of {self.count}"}[self.kind]

    def table(self, out: str) -> str:
        """The file this process appends its rows to."""
        return os.path.join(out, CSV_NAME) if self.kind == "single" else part_path(out, self.index, self.count)

    def barrier(self) -> None:
        if self.kind == "torchrun":
            import torch.distributed as dist
            dist.barrier()

    def first(self, work: Callable):
        """`work()` on rank 0, then on the other ranks once it is done (they then find its files)."""
        if self.index == 0:
            result = work()
            self.barrier()
            return result
        self.barrier()
        return work()


def parse_shard(text: str) -> Launch:
    """--shard K/N: share K (1 to N) of N."""
    k, slash, n = text.partition("/")
    if slash and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n):
        return Launch(int(k) - 1, int(n), "shard")
    raise InfinityError(f"--shard {text!r}: write K/N with 1 <= K <= N, such as 2/8 for the second of 8 jobs "
                        "(in a Slurm array: --shard $((SLURM_ARRAY_TASK_ID + 1))/$SLURM_ARRAY_TASK_COUNT).")


def from_environment() -> Launch | None:
    """This rank's launch when torchrun (or another launcher setting RANK and WORLD_SIZE) started it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except ValueError:
        raise InfinityError(f"RANK={os.environ['RANK']!r} and WORLD_SIZE={os.environ['WORLD_SIZE']!r} are not "
                            "whole numbers; start the ranks with torchrun.") from None
    if not 0 <= rank < world:
        raise InfinityError(f"RANK={rank} is outside WORLD_SIZE={world}; start the ranks with torchrun.")
    return Launch(rank, world, "torchrun")


@contextmanager
def joined(launch: Launch):
    """The device this process computes on; torchrun ranks join their process group for the
    duration (on GPUs, one GPU per rank: local rank i uses GPU i)."""
    cuda = torch.cuda.is_available()
    if launch.kind != "torchrun":
        yield torch.device("cuda" if cuda else "cpu")
        return
    import torch.distributed as dist

    device = torch.device("cpu")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise InfinityError(f"Local rank {local} has no GPU: this machine has {torch.cuda.device_count()}. "
                                "Start at most that many processes per machine (torchrun --nproc-per-node).")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=_WAIT, device_id=device if cuda else None)
    except (RuntimeError, ValueError) as exc:  # DistNetworkError, DistStoreError, a bad MASTER_PORT ...
        raise InfinityError(f"Could not join the other ranks ({str(exc).splitlines()[0] if str(exc) else exc!r}). "
                            "Start every rank with the same torchrun command (on several machines: the same "
                            "--nnodes, --rdzv-id and --rdzv-endpoint).") from exc
    try:
        yield device
    finally:
        dist.destroy_process_group()
