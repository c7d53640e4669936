"""The processes that train one run together, through Hugging Face Accelerate.

One process (the usual case) and N processes started by ``accelerate launch`` or ``torchrun``
(DDP: NCCL on GPUs, gloo on CPUs) go through the same :class:`Cluster`, so the training loop has
one code path. ``--batch-size`` is the global batch: each process takes its share of every batch,
so N processes take the same optimiser steps on the same rows as one process would.

Rank 0 (the main process) alone writes the run folder. A rank that fails writes one small file,
``ranks/rank-N.json``, so that the main process can mark the run failed with that rank's error.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

logger = logging.getLogger(__name__)

RANK_ERRORS = "ranks"


def launched_world_size() -> int:
    """How many processes a launcher (accelerate launch, torchrun, SLURM via either) started."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def exit_rank(code: int) -> int:
    """``code`` to return from a process's main; a failed rank under a launcher leaves at once.

    Its peers may sit in a collective, and an ordinary interpreter exit can hang tearing down the
    process group; the launcher ends the rest.
    """
    if code and launched_world_size() > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def fsdp_requested() -> bool:
    """``accelerate launch --use_fsdp`` (or an FSDP Accelerate config) asked for sharded
    training."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")


def gpu_count() -> int:
    """How many CUDA GPUs this process sees."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class Cluster:
    """This process's place among the processes of one run, and the few collectives training
    needs."""

    def __init__(self, device_name: str = "auto"):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs

        from .devices import resolve_device

        self.distributed = launched_world_size() > 1 or fsdp_requested()
        if self.distributed:
            use_cpu = device_name == "cpu" or not torch.cuda.is_available()
            if device_name not in ("auto", "cpu", "cuda"):
                raise ConfigError(
                    f"Device {device_name!r} cannot be used by several processes: each process "
                    "takes its own GPU. Set the device to auto, cuda or cpu."
                )
        else:
            device = resolve_device(device_name)
            use_cpu = device.type == "cpu"
            # One process: each run picks its own device, whatever an earlier run in this process
            # used.
            AcceleratorState._reset_state(reset_partial_state=True)
        # Buffers here are constants (position ids), and the frozen-prefix cache swaps the modules
        # that hold them out of the forward pass: DDP must not re-broadcast them every step.
        self._ddp = DistributedDataParallelKwargs(
            find_unused_parameters=False, broadcast_buffers=False
        )
        self.accelerator = Accelerator(cpu=use_cpu, kwargs_handlers=[self._ddp])
        self.device = self.accelerator.device if self.distributed else device

    # ----------------------------------------------------------------- who am I

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def is_fsdp(self) -> bool:
        from accelerate.utils import DistributedType

        return self.accelerator.distributed_type == DistributedType.FSDP

    def describe(self) -> str:
        return (
            f"{self.world} processes ({self.accelerator.distributed_type.value})"
            if self.distributed
            else "1 process"
        )

    # ----------------------------------------------------------------- training

    def wrap(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        unused_parameters: bool = False,
    ):
        """DDP- (or FSDP-) wrapped model and optimizer; unchanged for one process.

        ``unused_parameters``: some trainable weights get no gradient (a backbone part that the
        mean-pooled forward never reaches); DDP must then look for them every step, or it hangs.
        """
        if not self.distributed:
            return model, optimizer
        self._ddp.find_unused_parameters = unused_parameters
        return self.accelerator.prepare(model, optimizer)

    def shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's rows of a global batch (every rank gets len // world or one more)."""
        return index[self.rank :: self.world]

    def step_totals(self, loss_sum: torch.Tensor, rows: int, stop: bool) -> np.ndarray:
        """(world, 3) of [summed loss, rows, stop requested] per rank: one small all-gather a step.

        It is what lets progress show every rank and lets all ranks stop at the same step.
        """
        if not self.distributed:  # one device-to-host copy, as loss.item() would make
            return np.array([[loss_sum.item(), float(rows), float(stop)]])
        local = torch.stack(
            [
                loss_sum.detach().float().reshape(()),
                torch.tensor(float(rows), device=loss_sum.device),
                torch.tensor(float(stop), device=loss_sum.device),
            ]
        )
        return self.accelerator.gather(local[None]).cpu().numpy()

    def gather_rows(self, local: np.ndarray, shards: list[np.ndarray], n_rows: int) -> np.ndarray:
        """Outputs of every rank's shard of rows, put back in row order on every rank."""
        if len(shards) == 1:
            return local
        width = max(len(s) for s in shards)
        padded = np.zeros((width, local.shape[1]), dtype=np.float32)
        padded[: len(local)] = local
        gathered = (
            self.accelerator.gather(torch.from_numpy(padded).to(self.device)[None]).cpu().numpy()
        )
        out = np.zeros((n_rows, local.shape[1]), dtype=np.float32)
        for rank, rows in enumerate(shards):
            out[rows] = gathered[rank, : len(rows)]
        return out

    def clip_grad_norm_(self, parameters, max_norm: float) -> None:
        if self.is_fsdp:
            self.accelerator.clip_grad_norm_(parameters, max_norm)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def full_state(
        self, model: torch.nn.Module, wrapped: torch.nn.Module
    ) -> dict[str, torch.Tensor]:
        """Trainable weights, whole, on CPU (with FSDP they are gathered from every rank: all must
        call)."""
        if self.is_fsdp:
            trainable = {name for name, p in model.named_parameters() if p.requires_grad}
            state = self.accelerator.get_state_dict(wrapped)
            return {k: v.detach().to("cpu", copy=True) for k, v in state.items() if k in trainable}
        return {
            k: v.detach().to("cpu", copy=True)
            for k, v in model.named_parameters()
            if v.requires_grad
        }

    def finish(self) -> None:
        """Leave the process group cleanly on every rank.

        The caller must have dropped its references to the wrapped model and optimizer: a rank that
        destroys the group while DDP's reducer is still alive can abort at exit (SIGABRT).
        """
        if self.distributed or self.accelerator.device.type != "cpu":
            # DDP's reducer must be gone before the group is, and a GPU's cache released. One CPU
            # process holds nothing in the accelerator: two full collections (0.5 s) buy nothing.
            gc.collect()
            self.accelerator.free_memory()
        if self.distributed:
            self._barrier()
            self.accelerator.end_training()

    def _barrier(self) -> None:
        # Not accelerator.wait_for_everyone(): it passes a GPU id to the barrier whenever CUDA is
        # visible, which breaks gloo (CPU) process groups on GPU machines ("invalid device
        # ordinal").
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


_current: Cluster | None = None


def current_cluster(device_name: str = "auto") -> Cluster:
    """The launched process group, created once per process; a fresh one-process cluster
    otherwise."""
    global _current
    if launched_world_size() == 1 and not fsdp_requested():
        return Cluster(device_name)
    if _current is None:
        _current = Cluster(device_name)
    return _current


def broadcast_text(cluster: Cluster, text: str | None) -> str:
    """Rank 0's ``text`` on every rank (a run folder's path, chosen by the main process)."""
    if not cluster.distributed:
        return text or ""
    from accelerate.utils import broadcast

    size = torch.zeros(1, dtype=torch.int64, device=cluster.device)
    data = (text or "").encode()
    if cluster.is_main:
        size[0] = len(data)
    size = broadcast(size)
    buffer = torch.zeros(int(size[0]), dtype=torch.uint8, device=cluster.device)
    if cluster.is_main:
        buffer[:] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return bytes(broadcast(buffer).cpu().numpy()).decode()


# --------------------------------------------------------------------------- rank errors


def write_rank_error(run_dir: Path, rank: int, kind: str, message: str) -> None:
    """Record why this rank failed, for rank 0 to report (ranks/rank-N.json, atomically)."""
    folder = Path(run_dir) / RANK_ERRORS
    folder.mkdir(exist_ok=True)
    tmp = folder / f".rank-{rank}.json.tmp"
    tmp.write_text(json.dumps({"rank": rank, "kind": kind, "message": message}))
    os.replace(tmp, folder / f"rank-{rank}.json")


def read_rank_errors(run_dir: Path) -> list[dict]:
    """The failures recorded by ranks of this run, in rank order; unreadable files skipped."""
    folder = Path(run_dir) / RANK_ERRORS
    errors = []
    for path in sorted(folder.glob("rank-*.json")) if folder.is_dir() else []:
        try:
            errors.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(errors, key=lambda e: e.get("rank", 0))


def rank_failure(error: dict, world: int | None = None) -> tuple[str, str]:
    """(kind, message) for the run's status from a failed rank's error file."""
    of = f" of {world}" if world else ""
    return error.get(
        "kind", "other"
    ), f"Process {error.get('rank')}{of} failed: {error.get('message', '')}"


# --------------------------------------------------------------------------- launching


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the processes' rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(num_processes: int, program: list[str], *, port: int | None = None) -> list[str]:
    """``accelerate launch`` of ``program`` (``-m module args``) on N processes of this machine.

    ``--multi_gpu`` is what starts N processes also on a machine without GPUs (accelerate's own
    ``--cpu`` launcher starts one unless MPI is installed); each process then uses gloo on CPU.
    """
    if num_processes < 1:
        raise ConfigError(f"Number of processes is {num_processes}: use 1 or more.")
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *(["--multi_gpu"] if num_processes > 1 else []),
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(port or free_port()),
        "--mixed_precision",
        "no",  # FinTune applies its own autocast (bf16 where the hardware has it)
        "--dynamo_backend",
        "no",
        *program,
    ]
