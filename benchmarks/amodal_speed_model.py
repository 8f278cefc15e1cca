"""Amodal-VAE model forward speed: partial encode + decode of 28x28 masks at batch 1024 (CPU).

    python benchmarks/amodal_speed_model.py [--model DIR] [--batch 1024] [--repeats 20]
                                            [--threads N] [--no-record] [--note TEXT]

Target (issue 3): >= 5,000 masks/s at batch 1024 on the 2-core CPU. Variants, each on the same
weights and input (random binary masks): plain ``eval()`` under ``no_grad``; ``inference_mode``;
``inference_mode`` + channels_last input (the model converts CPU batches to channels_last
itself, docs/design.md, "Amodal-VAE"; the "contiguous" row switches that off); ``inference_mode`` + channels_last +
BatchNorm folded into the convolutions (:func:`maskgen.amodal.model.fuse_for_inference`, what
completion uses). FLOPs per mask are counted with ``torch.utils.flop_counter`` (a multiply-add
is 2 FLOPs). The box head runs once per instance too but is not part of this target; its rate is
reported on its own line. Records section ``amodal-speed-model`` of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import maskgen.amodal.model as M
    from maskgen.amodal.io import SHIPPED_MODEL
    from maskgen.amodal.model import AmodalVAE

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.model) if args.model else SHIPPED_MODEL
    model = AmodalVAE.from_folder(folder)
    fused = M.fuse_for_inference(model)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch, 1, 28, 28, generator=g) > 0.5).float()
    ctx = (
        torch.rand(
            args.batch, 2, model.config.box_context_size, model.config.box_context_size, generator=g
        )
        > 0.7
    ).float()
    wh = torch.rand(args.batch, 2, generator=g) * 50 + 10

    def fwd(m: M.AmodalVAE) -> torch.Tensor:
        return m.decode(m.encode_partial(x)[0])

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        fwd(model)
    flops = fc.get_total_flops() / args.batch
    with FlopCounterMode(display=False) as fcb, torch.no_grad():
        model.predict_amodal_box(x, context=ctx, vis_wh=wh)
    box_flops = fcb.get_total_flops() / args.batch

    def rate(fn, mode: str) -> tuple[float, float]:
        ctxm = torch.inference_mode() if mode == "inference" else torch.no_grad()
        times = []
        with ctxm:
            for _ in range(3):
                fn()
            for _ in range(args.repeats):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        return args.batch / med, args.batch / min(times)

    rows = []
    M._CHANNELS_LAST = False
    model_cf = M.AmodalVAE(model.config)
    model_cf.load_state_dict(model.state_dict())
    model_cf.eval()
    rows.append(("no_grad, contiguous (NCHW)", *rate(lambda: fwd(model_cf), "no_grad")))
    rows.append(("inference_mode, contiguous", *rate(lambda: fwd(model_cf), "inference")))
    M._CHANNELS_LAST = True
    rows.append(("inference_mode, channels_last", *rate(lambda: fwd(model), "inference")))
    rows.append(("inference_mode, channels_last, fused BN", *rate(lambda: fwd(fused), "inference")))
    box_rate = rate(lambda: fused.predict_amodal_box(x, context=ctx, vis_wh=wh), "inference")

    threads = torch.get_num_threads()
    best = max(r[1] for r in rows)
    lines = [
        f"Model: `{folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder}` "
        f"(widths {list(model.config.widths)}, fc {model.config.fc_dim}, latent "
        f"{model.config.latent_dim}); batch {args.batch}, {threads} torch threads, median of "
        f"{args.repeats} runs (best run in brackets).",
        "",
        f"FLOPs per mask (partial encode + decode): **{flops / 1e6:.2f} MFLOP**; box head "
        f"{box_flops / 1e6:.2f} MFLOP.",
        "",
        "| variant | masks/s | GFLOP/s |",
        "|---|---:|---:|",
    ]
    for name, med, top in rows:
        lines.append(f"| {name} | {med:,.0f} ({top:,.0f}) | {med * flops / 1e9:.1f} |")
    lines.append(
        f"| box head alone (fused, context {model.config.box_context_size}px) | "
        f"{box_rate[0]:,.0f} ({box_rate[1]:,.0f}) | {box_rate[0] * box_flops / 1e9:.1f} |"
    )
    lines += [
        "",
        f"Target >= 5,000 masks/s: **{'met' if best >= 5000 else 'NOT met'}** "
        f"(best variant {best:,.0f} masks/s median).",
    ]
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    command = "python benchmarks/amodal_speed_model.py" + (
        f" --model {args.model}" if args.model else ""
    )
    publish("amodal-speed-model", lines, command, note=args.note, record=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
