"""Data-parallel training with PyTorch DDP through the one training loop (``train.nproc``).

``fit`` with ``TrainConfig(nproc=N)`` starts N processes on this machine
(``torch.multiprocessing.spawn``; gloo on CPU, nccl on CUDA with one GPU per rank), each
running the same :func:`genrecsys.train.loop.fit` inside a process group:

- every rank draws the same batch order (one data seed) at ``batch_size // N`` and takes
  every N-th batch, so a step sees ``batch_size`` samples in all, as one process does; the
  last incomplete round of an epoch is dropped so every rank makes the same number of steps;
- the loss goes through ``DistributedDataParallel``, which averages the gradients;
- rank 0 validates, keeps the best weights, writes the log and the checkpoint, and tells the
  other ranks when to stop; each rank's dropout draws from its own seed (seed + rank) and
  the checkpoint keeps every rank's random state, so a resumed run continues exactly.

The launching process takes no part: it gets rank 0's best weights and ``FitResult`` back
and goes on as after a one-process fit (test evaluation, run directory). Several machines:
``torchrun ... -m genrecsys train ...`` starts the ranks (:func:`join_launcher_group`), and
``fit`` inside that process group runs the same per-rank path without spawning; rank 0
evaluates and writes the run directory (a resume reads its checkpoint, so the ranks need
the run directory on a shared filesystem to resume).
"""
from __future__ import annotations

import gc
import os
import pickle
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from genrecsys.errors import GenrecsysError


def join_launcher_group(device: str = "cpu") -> bool:
    """Under a launcher that starts the ranks itself (torchrun, on one or several machines:
    ``WORLD_SIZE`` > 1 in the environment), join its process group (gloo on CPU, nccl on
    CUDA with the GPU ``LOCAL_RANK``); returns whether this process is one rank of several.
    Rank 0 owns the run directory; the others train their share and write nothing."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def leave_launcher_group(ok: bool = True) -> None:
    """Wait for every rank (only when this one finished: a failed rank must not sit in a
    barrier its peers never reach), then tear the process group down. A rank that exits with its
    gloo group still alive can abort in C++ teardown ("terminate called without an active
    exception"); torchrun then reports that node failed and the other node's agent waits
    out its exit barrier (a two-node run hung for minutes in CI)."""
    if dist.is_available() and dist.is_initialized():
        try:
            if ok:
                dist.barrier()
        finally:
            # A DDP wrapper caught in a reference cycle keeps the gloo group alive past
            # destroy_process_group until interpreter teardown, where the same abort can hit:
            # collect it first.
            gc.collect()
            dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class LossModule(nn.Module):
    """DDP hooks gradient averaging into ``forward``: this makes ``model.loss`` the forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.loss(batch)


def wrap(model: nn.Module, device: str) -> nn.Module:
    """The model's loss under DDP. ``find_unused_parameters``: some models leave parameters
    out of some steps (a pretraining phase, an optional side input)."""
    from torch.nn.parallel import DistributedDataParallel

    cuda = device.startswith("cuda")
    inner = LossModule(model)
    # Sparse buffers (LightGCN's normalised adjacency) are built from the data on every rank
    # alike, and DDP cannot broadcast them.
    sparse = [name for name, buf in inner.named_buffers() if buf.layout != torch.strided]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(inner, sparse)
    return DistributedDataParallel(inner, device_ids=[torch.device(device).index] if cuda else None,
                                   find_unused_parameters=True)


def rank_batches(batches, rank: int, world: int):
    """Every ``world``-th batch from ``rank`` on, in full rounds only (all ranks step together)."""
    round_: list[Any] = []
    for batch in batches:
        round_.append(batch)
        if len(round_) == world:
            yield round_[rank]
            round_ = []


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rng() -> list[torch.Tensor]:
    """Every rank's torch CPU random state, in rank order (each rank gets the list)."""
    _, world = rank_and_world()
    states: list[Any] = [None] * world
    dist.all_gather_object(states, torch.get_rng_state())
    return states


def all_mean(total: float, n: int) -> float:
    """Mean over all ranks of per-rank sums ``total`` over ``n`` items."""
    t = torch.tensor([total, float(n)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / max(t[1], 1.0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, args: tuple, out_path: str) -> None:
    fit, blob, split, train_cfg, eval_cfg, max_len, run_dir, resume = args
    model = pickle.loads(blob)  # this rank's own copy of the weights (see spawn_fit)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = train_cfg.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(rank)
    elif not train_cfg.threads:  # share the cores instead of N processes x all cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    ok = False
    try:
        result = fit(model, split, train_cfg, eval_cfg, max_len=max_len, run_dir=run_dir, resume=resume)
        if rank == 0:  # the best weights are loaded: hand them and the result to the launcher
            torch.save({"state": {k: v.cpu() for k, v in model.state_dict().items()}, "result": result}, out_path)
        ok = True
    finally:
        leave_launcher_group(ok)


def spawn_fit(fit: Callable[..., Any], model: nn.Module, split, train_cfg, eval_cfg, *, max_len: int, run_dir,
              resume: bool):
    """Run ``fit`` (`genrecsys.train.loop.fit`, handed in: the loop calls this module, not
    the other way round) in ``train_cfg.nproc`` processes; load rank 0's best weights into
    ``model`` and return its ``FitResult``."""
    import torch.multiprocessing as mp

    world = train_cfg.nproc
    if train_cfg.device.startswith("cuda") and torch.cuda.device_count() < world:
        raise GenrecsysError(f"train.nproc={world} on CUDA needs {world} GPUs, found {torch.cuda.device_count()}")
    with tempfile.TemporaryDirectory(prefix="genrecsys-ddp-") as tmp:
        out_path = str(Path(tmp) / "rank0.pt")
        # The model travels as plain pickle bytes: handed to spawn as a module, torch's
        # multiprocessing moves its tensors to shared memory, so every rank would update the
        # same weights (each step applied N times, racing: a run was not reproducible).
        blob = pickle.dumps(model.cpu())
        args = (fit, blob, split, train_cfg, eval_cfg, max_len, str(run_dir) if run_dir else None, resume)
        mp.spawn(_worker, args=(world, _free_port(), args, out_path), nprocs=world, join=True)
        saved = torch.load(out_path, map_location="cpu", weights_only=False)
    model.load_state_dict(saved["state"])
    return saved["result"]
