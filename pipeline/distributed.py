"""Several processes, one job: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) turned into a process group — NCCL on CUDA, gloo on CPU — and the few collectives
training and prediction need, named all_* or broadcast* (every rank must call them, in the same order). Without
torchrun everything here is a no-op for a single process.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def ranks() -> Ranks:
    """This process's place in the job: from the initialised process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return Ranks()


# Waits that are not GPU work (rank 0 decoding a cache, say) and object exchanges go through a CPU (gloo)
# group with this long a timeout: NCCL's watchdog stops a process whose collective waits over 10 minutes,
# gloo's default group one that waits over 30.
LONG_WAIT = timedelta(hours=6)
_cpu_group = None


def init_from_env(device: torch.device) -> Ranks:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns this process's ranks. On CUDA
    each process first takes its own GPU (cuda:LOCAL_RANK), so NCCL's first collective sees one GPU per rank."""
    global _cpu_group
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return ranks()
    own = own_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if own.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, device_id=own if own.type == "cuda" else None)
        _cpu_group = dist.new_group(backend="gloo", timeout=LONG_WAIT)
    except (RuntimeError, ValueError) as e:
        raise PipelineError(f"cannot join the torchrun process group ({backend}): {str(e).splitlines()[0]}") from None
    atexit.register(dist.destroy_process_group)
    return ranks()


def own_device(device: torch.device, local_rank: int = 0, distributed: bool = True) -> torch.device:
    """This process's device, made CUDA's current one: cuda:LOCAL_RANK in a torchrun job, else the GPU
    `--device` names (cuda:N); CPU processes share the CPU."""
    if device.type != "cuda":
        return device
    index = local_rank if distributed else (device.index or 0)
    visible = torch.cuda.device_count()
    if index >= visible:
        raise PipelineError(f"no GPU for local rank {index} ({visible} visible): start at most {visible} "
                            "process(es) with --nproc" if distributed else
                            f"--device {device}: only {visible} GPU(s) visible (cuda:0 to cuda:{visible - 1})")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def broadcast(value, where: Ranks):
    """Rank 0's `value` on every rank (any picklable object)."""
    if not where.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_cpu_group)
    return box[0]


def barrier(where: Ranks) -> None:
    """Wait for every rank, however long (on the CPU group, outside NCCL's watchdog)."""
    if where.distributed:
        dist.barrier(group=_cpu_group)


@contextlib.contextmanager
def rank_zero_first(where: Ranks):
    """Rank 0 runs the block first (e.g. decodes a cache), the other ranks after it (and read what it wrote)."""
    if not where.main:
        barrier(where)
    yield
    if where.main:
        barrier(where)


def all_sum(values: list[float], device: torch.device, where: Ranks) -> list[float]:
    """Element-wise sums over all ranks."""
    if not where.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_concat(array: np.ndarray, where: Ranks) -> np.ndarray:
    """The ranks' arrays concatenated in rank order, on every rank."""
    if not where.distributed:
        return array
    return np.concatenate(all_objects(array, where))


def all_objects(value, where: Ranks) -> list:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if not where.distributed:
        return [value]
    parts = [None] * where.world
    dist.all_gather_object(parts, value, group=_cpu_group)
    return parts


def broadcast_buffers(model: torch.nn.Module, where: Ranks) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics: each rank's last forward pass moved its
    own), so all ranks evaluate the very model rank 0 saves."""
    if where.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def weights_checksum(model: torch.nn.Module) -> float:
    """A checksum of the parameters. (BatchNorm statistics are buffers: DDP copies rank 0's to the
    others before each forward pass, and rank 0's are the ones saved.)"""
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def same_on_all_ranks(checksum: float, device: torch.device, where: Ranks) -> bool:
    """Whether every rank computed the same `weights_checksum`."""
    if not where.distributed:
        return True
    low = torch.tensor(checksum, dtype=torch.float64, device=device)
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(low == high)


def launch(nproc: int, argv: list[str]) -> int:
    """`pipeline … --nproc N`: run the same command under torchrun with N processes on this machine.
    When it fails, only the processes' one-line errors are shown, not the launcher's traceback."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "pipeline", *argv]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as torchrun:
        interrupted = False
        try:
            stderr = torchrun.communicate()[1]
        except KeyboardInterrupt:
            stderr, interrupted = interrupt(torchrun), True
    failure = re.compile(r"^(error:|interrupted|\[rank\d+\]: [\w.]*(Error|Exception)\b)")
    errors = list(dict.fromkeys(line for line in stderr.splitlines() if failure.match(line)))
    if torchrun.returncode == 0:
        sys.stderr.write(stderr)
    else:
        sys.stderr.write("\n".join(errors or [f"error: torchrun with {nproc} processes failed (exit status "
                                              f"{torchrun.returncode})"]) + "\n")
    return 130 if interrupted else torchrun.returncode  # 130: the shell's code for Ctrl-C


def interrupt(torchrun: subprocess.Popen) -> str:
    """Ctrl-C while torchrun runs: its processes (in sessions of their own, which a terminal's Ctrl-C does not reach)
    stop as one process would, marking the run interrupted. torchrun passes SIGINT on to them and waits for them; it is
    sent one when the terminal's did not reach it (a signal to this process alone), and killed if they hang."""
    try:
        return torchrun.communicate(timeout=2)[1]
    except subprocess.TimeoutExpired:
        torchrun.send_signal(signal.SIGINT)
    try:
        return torchrun.communicate(timeout=60)[1]
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        torchrun.kill()
        return torchrun.communicate()[1]
