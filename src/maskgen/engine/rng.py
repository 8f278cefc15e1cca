"""Seeding and random-state capture for exact resume.

:func:`capture_rng_state` returns only tensors and plain Python values, so it can be stored in
a checkpoint that ``torch.load(weights_only=True)`` reads (docs/design.md, "The engine contract").
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from maskgen.engine.distributed import global_rank


def rank_seed(seed: int, rank: int) -> int:
    """The seed used by ``rank``: ``seed`` itself on rank 0, a distinct 63-bit seed elsewhere."""
    if rank == 0:
        return int(seed)
    state = np.random.SeedSequence([int(seed) % 2**63, int(rank)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 ^ int(state[1])) % 2**63


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA).

    Each rank gets its own stream (:func:`rank_seed`); rank 0 uses ``seed`` unchanged, so a
    single-process run with seed ``s`` equals rank 0 of a distributed run with seed ``s``.
    """
    s = rank_seed(seed, rank)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)  # also seeds every CUDA device


def capture_rng_state() -> dict[str, Any]:
    """This process's random state: Python, numpy, torch CPU and (if initialised) CUDA.

    Returns a dict of tensors, ints, floats and lists only (``weights_only``-safe). The dict
    records the capturing rank; see :func:`restore_rng_state`.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "rank": global_rank(),
        "python": {"version": int(version), "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(d: dict[str, Any]) -> None:
    """Restore a state made by :func:`capture_rng_state`.

    Checkpoints are written by rank 0 only, so every rank receives rank 0's state. The rank that
    captured it continues exactly; any other rank restores it and then re-seeds from a draw of
    it mixed with its own rank, so ranks keep distinct (and still reproducible) streams.
    """
    py = d["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss_next"]))
    npd = d["numpy"]
    keys = npd["keys"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state(
        (
            npd["name"],
            keys.astype(np.uint32),
            int(npd["pos"]),
            int(npd["has_gauss"]),
            float(npd["cached_gaussian"]),
        )
    )
    torch.set_rng_state(d["torch"].cpu().to(torch.uint8))
    cuda = d.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        states = [s.cpu().to(torch.uint8) for s in cuda]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    rank = global_rank()
    if int(d.get("rank", 0)) != rank:
        base = int(torch.randint(0, 2**62, (1,)).item())
        seed_everything(base, rank)
