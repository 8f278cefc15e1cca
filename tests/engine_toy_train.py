"""A tiny deterministic training loop following the resume recipe of docs/engine.md.

Used by tests/test_engine.py for the kill-and-resume test and the 2-process torchrun test:

    python tests/engine_toy_train.py --out RUN [--steps 40 --every 5 --sleep 0.02]
    torchrun --nproc_per_node=2 tests/engine_toy_train.py --out RUN

An MLP regresses a fixed random linear target; each step draws a minibatch with the global torch
RNG (so resume is exact only if the RNG state is restored). Ranks draw different minibatches, so
identical final weights on all ranks show that gradients were averaged.

Prints, per rank: ``resumed-from <step>`` and ``final <rank> <sha256 of the weights>``; on ranks
other than 0 an audit hook counts files opened for writing under ``--out`` and prints
``rank-writes <rank> <count>``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from maskgen.engine import (
    RunFolder,
    capture_rng_state,
    check_finite,
    init_distributed,
    load_model_folder,
    progress,
    restore_rng_state,
    save_model_folder,
    seed_everything,
    shutdown_distributed,
    unwrap,
    wrap_ddp,
)

_writes: list[str] = []


def _watch_writes(out: Path) -> None:
    root = str(out.resolve())

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            mode = args[1] if len(args) > 1 else "r"
            flags = args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing and os.path.abspath(path).startswith(root):
                _writes.append(path)
        elif (
            event in ("os.rename", "os.remove", "os.mkdir")
            and args
            and os.path.abspath(os.fsdecode(args[0])).startswith(root)
        ):
            _writes.append(f"{event} {args[0]}")

    sys.addaudithook(hook)


def weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--nan-at", type=int, default=-1, help="make the loss NaN at this step")
    args = p.parse_args()
    torch.set_num_threads(1)

    ctx = init_distributed("cpu")
    if not ctx.is_main:
        _watch_writes(Path(args.out))
    seed_everything(args.seed, ctx.rank)
    cfg = {"steps": args.steps, "every": args.every, "seed": args.seed, "hidden": 16}
    run = RunFolder(args.out, kind="toy-mlp", config=cfg, ctx=ctx, keep=2)

    # Fixed data, independent of the global RNG.
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(256, 1, generator=g)

    model = nn.Sequential(nn.Linear(8, cfg["hidden"]), nn.Tanh(), nn.Linear(cfg["hidden"], 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    step = 0
    state = run.load_latest_checkpoint(map_location=ctx.device)
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        restore_rng_state(state["rng"])
    print(f"resumed-from {step}", flush=True)
    ddp = wrap_ddp(model, ctx)

    for i in progress(args.steps, "toy", initial=step, ctx=ctx):
        idx = torch.randint(0, x.shape[0], (32,))
        loss = nn.functional.mse_loss(ddp(x[idx]), y[idx])
        if i == args.nan_at:
            loss = loss * float("nan")
        check_finite(loss, i, run=run)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = i + 1
        if done % args.every == 0 or done == args.steps:
            state = {
                "model": unwrap(ddp).state_dict(),
                "opt": opt.state_dict(),
                "step": done,
                "rng": capture_rng_state(),
            }
            run.save_checkpoint(done, state)
            run.log(done, loss=loss)
        if args.sleep:
            time.sleep(args.sleep)

    save_model_folder(run.model_dir(), "toy-mlp", cfg, unwrap(ddp).state_dict())
    run.mark_finished()
    if ctx.is_main:
        _, sd = load_model_folder(run.model_dir(), "toy-mlp")  # round trip through the folder
        assert sorted(sd) == sorted(model.state_dict())
    print(f"final {ctx.rank} {weights_digest(unwrap(ddp))}", flush=True)
    if not ctx.is_main:
        print(f"rank-writes {ctx.rank} {len(_writes)} {_writes[:3]}", flush=True)
    shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
