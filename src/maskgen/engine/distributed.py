"""Process-group setup for training: one entry point for a plain process and for ``torchrun``.

A plain ``python -m maskgen ...`` (no ``WORLD_SIZE`` in the environment) runs at world size 1
and never creates a process group. Under ``torchrun`` the environment variables ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``) select the process; the
backend is gloo on CPU (so two processes on one machine exercise the real distributed path)
and nccl on CUDA (docs/design.md, "The engine contract").
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from maskgen.errors import MaskgenError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) training job.

    Attributes:
        rank: global rank, 0 for a plain process.
        world_size: number of processes, 1 for a plain process.
        local_rank: rank on this machine; selects the CUDA device.
        device: the device this process computes on (``cpu`` or ``cuda:<local_rank>``).
        is_main: ``rank == 0``; only the main process writes files.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    is_main: bool = True


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise MaskgenError(f"environment variable {name}={value!r}: not an integer") from None


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device when this torch build and machine have it (``cpu``,
    ``cuda``, ``cuda:N``).

    Raises:
        MaskgenError: naming ``--device``: an unknown device string, CUDA on a torch build or
            machine without it, or a CUDA index beyond the visible devices.
    """
    text = str(device).strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text != "cuda" and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise MaskgenError(f"--device {device}: expected cpu or cuda (cuda:N for one device)")
    if not torch.cuda.is_available():
        raise MaskgenError(
            f"--device {device}: CUDA is not available on this machine (torch "
            f"{torch.__version__}); use --device cpu"
        )
    dev = torch.device(text)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise MaskgenError(
            f"--device {device}: CUDA device {dev.index} requested but only "
            f"{torch.cuda.device_count()} visible"
        )
    return dev


def init_distributed(device: str | torch.device = "cpu") -> DistContext:
    """Set up this process for training and return its :class:`DistContext`.

    Reads torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them (or with
    ``WORLD_SIZE=1``) no process group is created. With more than one process the group uses
    gloo on CPU and nccl on CUDA (``init_method="env://"``); calling it again reuses the group.

    Args:
        device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``. Under torchrun each process
            takes ``cuda:<LOCAL_RANK>``; a plain process takes ``cuda:N`` (default 0).

    Raises:
        MaskgenError: an unknown device, or ``cuda`` when CUDA is not available.
    """
    kind = check_device(device).type
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank if world_size > 1 else 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise MaskgenError(
            f"RANK={rank}, WORLD_SIZE={world_size}: inconsistent torchrun environment"
        )

    if kind == "cuda":
        if world_size > 1:
            index = local_rank
        else:
            text = str(device)
            index = int(text.split(":", 1)[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise MaskgenError(
                f"--device {device}: CUDA device {index} requested but only "
                f"{torch.cuda.device_count()} visible"
            )
        torch.cuda.set_device(index)
        dev = torch.device("cuda", index)
    else:
        dev = torch.device("cpu")

    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if kind == "cuda" else "gloo"
        kwargs: dict[str, Any] = {}
        if kind == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(
            backend=backend, init_method="env://", rank=rank, world_size=world_size, **kwargs
        )
    return DistContext(
        rank=rank, world_size=world_size, local_rank=local_rank, device=dev, is_main=rank == 0
    )


def shutdown_distributed() -> None:
    """Destroy the process group if one exists (safe to call at world size 1)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True when a process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_rank() -> int:
    """This process's rank in the active process group, 0 when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_main_process() -> bool:
    """True on rank 0 (and in a plain process): the only process that writes files."""
    return global_rank() == 0


def barrier() -> None:
    """Wait for all processes (no-op at world size 1)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over all processes; returns ``t`` itself at world size 1.

    With several processes the result is a new tensor (``t`` is left unchanged); on nccl
    ``t`` must live on this process's CUDA device.
    """
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def wrap_ddp(model: nn.Module, ctx: DistContext, **ddp_kwargs: Any) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when ``ctx.world_size > 1``, else return it.

    Construction broadcasts rank 0's parameters and buffers, so all ranks start identical;
    gradients are averaged over ranks in ``backward``. Extra keyword arguments go to DDP.
    """
    if ctx.world_size <= 1:
        return model
    if ctx.device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [ctx.device.index])
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper and/or ``torch.compile`` (identity otherwise)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _device_type(device: str | torch.device) -> str:
    return device.type if isinstance(device, torch.device) else str(device).split(":", 1)[0]


def autocast_dtype(device: str | torch.device) -> torch.dtype | None:
    """The mixed-precision dtype used on ``device``: bf16 on CUDA when supported, else fp16;
    ``None`` on CPU (full float32)."""
    if _device_type(device) != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_context(device: str | torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on CUDA (bf16 if supported, else fp16); a null context on CPU.

    With fp16 pair it with :func:`make_grad_scaler` (bf16 needs no scaler).
    """
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def make_grad_scaler(device: str | torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only where :func:`autocast_context` uses fp16.

    Disabled scalers pass losses and steps through unchanged, so the loop is the same everywhere:
    ``scaler.scale(loss).backward(); scaler.step(opt); scaler.update()``.
    """
    enabled = autocast_dtype(device) == torch.float16
    return torch.amp.GradScaler(_device_type(device), enabled=enabled)
