"""Can application 2's discriminator tell object shapes from blobs? A probe of the adversarial
signal, with the generator replaced by banks of known layers.

Every application-2 run so far ends with object-sized blobs (RESULTS, "cluster: what was
tried"). A GAN stops at blobs either because its discriminator does not prefer the true shapes
(no signal) or because the generator cannot find them (optimisation). This probe separates the
two on a built-in synthetic cluster, whose every object is known whole: it trains only the
discriminator, exactly as ``cluster train`` does (same config, real patches, backgrounds,
layout, composition, ground jitter, D phase, steps), but the layers come from a bank instead of
the generator:

- ``shape``: the true objects (complete mask and colour), centred as the generator centres;
- ``shape-flat``: the true masks filled with each object's mean colour;
- ``disk-flat``: a disk of the same area at the same place, same flat colour (a blob).

A discriminator trained against ``disk-flat`` composites is the one a GAN stuck at blobs
faces; if it scores ``shape-flat`` composites as more real than ``disk-flat`` ones, a generator
that moved towards the true shapes would be rewarded (the signal exists). A discriminator
trained against ``shape-flat`` composites shows how much the composition itself gives away
(AUC near 0.5: true shapes in this pipeline pass as real).

With ``--silhouette-weight`` in the flags the trainer's second discriminator, which sees only
the patches' soft silhouettes, trains beside D and is scored the same way.

Reported per discriminator and training seed: the mean probability D gives each kind of patch
(fresh real patches, and fresh composites of each bank) and the AUC of real vs each kind
(0.5 = D cannot tell them apart).

Usage::

    python benchmarks/cluster_probe.py --shape horse --work /tmp/probe --seeds 0,1 \
        -- --preset quality --area-target 0.08 --ground-jitter 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTION = "cluster-probe"
BANKS = ("shape", "shape-flat", "disk-flat")
TRAIN_AGAINST = ("disk-flat", "shape-flat")
EVAL_BATCHES = 16


def make_data(work: Path, shape: str) -> Path:
    """The built-in synthetic cluster of ``shape`` as ``maskgen data cluster`` writes it."""
    data = work / f"synthetic-{shape}"
    if not (data / "image.png").is_file():
        argv = ["data", "cluster", "--kind", "synthetic", "--shape", shape, "--out", str(data)]
        subprocess.run([sys.executable, "-m", "maskgen", *argv], check=True)
    return data


def object_layers(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The cluster's objects whole (re-drawn from its seed, checked against ``image.png``):
    alphas ``K x H x W``, colours ``K x H x W x 3``, the image, and the instance size."""
    from maskgen.core.io import read_image
    from maskgen.data.cluster_images import synthetic_cluster, synthetic_layers

    info = json.loads((data / "info.json").read_text())
    params = dict(info["params"])
    params["scale_range"] = tuple(params["scale_range"])
    size = tuple(info["size"])
    image = read_image(data / "image.png", "RGB")
    if not np.array_equal(synthetic_cluster(size, seed=info["seed"], **params).image, image):
        raise SystemExit(f"{data}: image.png is not the cluster its info.json describes")
    alphas, colours = synthetic_layers(size, seed=info["seed"], **params)
    return alphas, colours, image, int(params["instance_size"])


def cluster_config(flags: list[str], **fixed: object):
    """The :class:`ClusterConfig` that ``cluster train FLAGS`` would use."""
    from maskgen.engine.config import add_config_arguments, config_from_args
    from maskgen.independence.cluster_config import ClusterConfig

    p = argparse.ArgumentParser(prog="cluster train")
    add_config_arguments(p, ClusterConfig)
    return config_from_args(ClusterConfig, p.parse_args(flags), **fixed)


def _disk_like(alpha: np.ndarray) -> np.ndarray:
    """An anti-aliased disk with ``alpha``'s area, centred on its centroid."""
    h, w = alpha.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    area = float(alpha.sum())
    cy, cx = (alpha * yy).sum() / area, (alpha * xx).sum() / area
    r = np.sqrt(area / np.pi)
    return np.clip(r - np.hypot(yy - cy, xx - cx) + 0.5, 0.0, 1.0)


def banks(
    alphas: np.ndarray, colours: np.ndarray, instance_size: int, patch: int
) -> dict[str, torch.Tensor]:
    """``M x 4 x P x P`` float RGBA layers of every object not touching the image border, one
    window (``1.5 x instance size``) around its box centre resized to the patch, per bank."""
    import cv2

    from maskgen.independence.cluster_patches import window_size

    win = window_size(instance_size)
    h, w = alphas.shape[1:]
    out: dict[str, list[np.ndarray]] = {b: [] for b in BANKS}
    for a, c in zip(alphas, colours, strict=True):
        ys, xs = np.nonzero(a > 0.5)
        if len(ys) == 0 or ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1:
            continue
        cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
        y0, x0 = int(round(cy - win / 2)), int(round(cx - win / 2))
        rgba = np.zeros((win, win, 4), np.float32)
        sy, sx = slice(max(0, y0), min(h, y0 + win)), slice(max(0, x0), min(w, x0 + win))
        ty = slice(sy.start - y0, sy.stop - y0)
        tx = slice(sx.start - x0, sx.stop - x0)
        rgba[ty, tx, :3], rgba[ty, tx, 3] = c[sy, sx], a[sy, sx]
        rgba = cv2.resize(rgba, (patch, patch), interpolation=cv2.INTER_LINEAR)
        alpha = np.clip(rgba[..., 3], 0, 1)
        mean = (rgba[..., :3] * alpha[..., None]).sum((0, 1)) / max(alpha.sum(), 1e-6)
        flat = np.broadcast_to(mean, rgba[..., :3].shape)
        out["shape"].append(np.dstack([rgba[..., :3], alpha]))
        out["shape-flat"].append(np.dstack([flat, alpha]))
        out["disk-flat"].append(np.dstack([flat, _disk_like(alpha)]))
    return {
        b: torch.from_numpy(np.stack(v).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
        for b, v in out.items()
    }


class BankGenerator(nn.Module):
    """Stands in for the instance generator: each code draws a random layer of the bank
    (mirrored at random), from the global RNG as the trainer's other draws are."""

    def __init__(self, bank: torch.Tensor) -> None:
        super().__init__()
        self.bank = bank

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        idx = torch.randint(len(self.bank), (len(z),))
        out = self.bank[idx]
        flip = torch.rand(len(z)) < 0.5
        return torch.where(flip[:, None, None, None], out.flip(-1), out).to(z.device)


def probe_one(
    image: np.ndarray,
    instance_size: int,
    layer_banks: dict[str, torch.Tensor],
    against: str,
    seed: int,
    flags: list[str],
) -> dict:
    """Train D for the config's steps against ``against`` composites; score every bank."""
    from maskgen.engine import init_distributed, seed_everything
    from maskgen.independence.cluster import ClusterTrainer
    from maskgen.independence.cluster_patches import PatchSampler
    from maskgen.independence.selection import roc_auc

    cfg = cluster_config(flags, seed=seed, instance_size=instance_size)
    sampler = PatchSampler(image, instance_size, cfg.patch_size, cfg.flips)
    ctx = init_distributed("cpu")
    seed_everything(cfg.seed, ctx.rank)
    tr = ClusterTrainer(cfg, sampler, ctx)
    t0 = time.process_time()
    tr.gw = BankGenerator(layer_banks[against])
    for step in range(cfg.steps):
        real, out = tr.generate_phase()
        last = tr.d_phase(step, real, out)
    d_cpu = time.process_time() - t0
    # Each discriminator with what it is shown: D the patches, the silhouette D (with
    # --silhouette-weight) their silhouettes, taken before the ground jitter as in training.
    views = {"rgb": (tr.d, "real", "composite")}
    if tr.d_sil is not None:
        views["silhouette"] = (tr.d_sil, "real_silhouette", "silhouette")
    scores = {v: {k: [] for k in ("real", *BANKS)} for v in views}
    for d, _, _ in views.values():
        d.eval()
    with torch.no_grad():
        for _ in range(EVAL_BATCHES):
            for b in BANKS:
                tr.gw = BankGenerator(layer_banks[b])
                real, out = tr.generate_phase()
                out["real"] = real
                for v, (d, real_key, fake_key) in views.items():
                    if b == BANKS[0]:
                        scores[v]["real"].append(d(out[real_key]).mean((1, 2, 3)).numpy())
                    scores[v][b].append(d(out[fake_key]).mean((1, 2, 3)).numpy())
    res = {"against": against, "seed": seed, "d_cpu_s": d_cpu, "last": last, "views": {}}
    for v, vs in scores.items():
        s = {k: np.concatenate(x) for k, x in vs.items()}
        res["views"][v] = {
            "p_real": {k: float(torch.sigmoid(torch.from_numpy(x)).mean()) for k, x in s.items()},
            "auc": {b: roc_auc(s["real"], s[b]) for b in BANKS},
        }
    return res


def section(results: list[dict], shape: str, flags: list[str], n_bank: int) -> list[str]:
    lines = [
        f"Built-in synthetic `{shape}` cluster; `cluster train` flags `{' '.join(flags)}` "
        f"(its steps, batch, layout, backgrounds and D), the generator replaced by banks of "
        f"{n_bank} known objects (every object not touching the border). D's mean probability "
        f"of 'real' per kind of patch ({EVAL_BATCHES} fresh batches each) and the AUC of real "
        "vs that kind (0.5 = cannot tell; 1 = always tells). D `rgb` sees the patches; "
        "`silhouette` (with `--silhouette-weight`) the second D, which sees their soft "
        "silhouettes; the two train side by side, and the D CPU time is both.",
        "",
        "| D trained against | seed | D | D CPU s | p real: real | shape | shape-flat | disk-flat | "
        "AUC real vs shape | vs shape-flat | vs disk-flat |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for v, vr in r["views"].items():
            p, a = vr["p_real"], vr["auc"]
            lines.append(
                f"| {r['against']} | {r['seed']} | {v} | {r['d_cpu_s']:.0f} | {p['real']:.3f} | "
                f"{p['shape']:.3f} | {p['shape-flat']:.3f} | {p['disk-flat']:.3f} | "
                f"{a['shape']:.3f} | {a['shape-flat']:.3f} | {a['disk-flat']:.3f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    from _record import publish

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="horse")
    ap.add_argument("--work", required=True, help="folder for the rendered cluster")
    ap.add_argument("--seeds", default="0", help="discriminator training seeds")
    ap.add_argument("--against", default=",".join(TRAIN_AGAINST))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default=None, help="section suffix for a setting of one shape")
    ap.add_argument("--note", default=None)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("flags", nargs="*", help="'cluster train' flags (after --)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    alphas, colours, image, inst = object_layers(make_data(work, a.shape))
    patch = cluster_config(a.flags).patch_size
    layer_banks = banks(alphas, colours, inst, patch)
    results = []
    for against in a.against.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            results.append(probe_one(image, inst, layer_banks, against, seed, a.flags))
            print(json.dumps(results[-1]), file=sys.stderr)
    (work / f"probe{'-' + a.label if a.label else ''}.json").write_text(
        json.dumps(results, indent=2) + "\n"
    )
    cmd = "python benchmarks/cluster_probe.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    n_bank = len(next(iter(layer_banks.values())))
    lines = section(results, a.shape, a.flags, n_bank)
    name = f"{SECTION}-{a.shape}" + (f"-{a.label}" if a.label else "")
    publish(name, lines, cmd, a.note, record=not a.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
