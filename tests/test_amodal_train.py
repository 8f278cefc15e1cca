"""Amodal-VAE training: data from visible masks only, the three stages, the CLI, resume, NaN stop,
corrupt checkpoints and a 2-process torchrun run (tiny configs, CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskgen.amodal import training as T
from maskgen.amodal.data import (
    BIT_INSIDE,
    BIT_OTHERS,
    BIT_SELF,
    augmented_complete,
    extract_instances,
    is_complete,
    known_pixel_targets,
    synthetic_occlusion,
)
from maskgen.amodal.model import AmodalVAE
from maskgen.core.compositing import visible_masks
from maskgen.core.rle import encode_rle
from maskgen.data.types import Dataset, ImageRecord, Instance
from maskgen.engine import DistContext, RunOptions, make_config
from maskgen.errors import MaskgenError, NonFiniteLossError

TINY_MODEL = {
    "crop_size": 28,
    "latent_dim": 64,
    "widths": [8, 8],
    "res_blocks": 2,
    "fc_dim": 32,
    "box_widths": [4, 8, 8],
    "box_fc_dim": 16,
    "box_context_scale": 3.0,
    "box_context_size": 48,
}
TINY_FLAGS = [
    "--stage1-steps", "30", "--stage2-steps", "30", "--stage3-steps", "20",
    "--batch-size", "32", "--stage1-pool", "400", "--stage2-pool", "400",
    "--val-samples", "100", "--widths", "8,8", "--fc-dim", "32",
    "--log-every", "5", "--checkpoint-every", "10",
]  # fmt: skip
REPO = Path(__file__).resolve().parent.parent


def make_dataset(n_images: int = 12, seed: int = 0, size: int = 64) -> Dataset:
    """Ellipses and rectangles in depth order; exact visible and amodal masks."""
    rng = np.random.default_rng(seed)
    images = []
    ann_id = 1
    for i in range(n_images):
        fulls = []
        for k in range(int(rng.integers(3, 5))):
            m = np.zeros((size, size), np.uint8)
            cx, cy = rng.integers(14, size - 14, 2)
            ax, ay = rng.integers(5, 12, 2)
            if k % 2 == 0:
                cv2.ellipse(
                    m,
                    (int(cx), int(cy)),
                    (int(ax), int(ay)),
                    float(rng.uniform(0, 180)),
                    0,
                    360,
                    1,
                    -1,
                )
            else:
                cv2.rectangle(m, (int(cx - ax), int(cy - ay)), (int(cx + ax), int(cy + ay)), 1, -1)
            fulls.append(m.astype(bool))
        vis = visible_masks(np.stack(fulls))
        insts = []
        for k, (f, v) in enumerate(zip(fulls, vis, strict=True)):
            if v.sum() < 10:
                continue
            insts.append(
                Instance(
                    id=ann_id,
                    category_id=1,
                    visible_segm=encode_rle(v),
                    amodal_segm=encode_rle(f),
                    depth=k,
                )
            )
            ann_id += 1
        images.append(
            ImageRecord(
                id=i + 1, file_name=f"{i:06d}.png", height=size, width=size, instances=insts
            )
        )
    return Dataset(images=images, categories=[{"id": 1, "name": "shape"}], layout="kins-2020")


def write_coco(ds: Dataset, path: Path) -> None:
    from maskgen.data.coco import write_coco as wc

    wc(ds, path)


OPTS = RunOptions(log_every=5, checkpoint_every=10, quiet=True)


def tiny_cfg(**kw) -> T.TrainConfig:
    base = dict(
        stage1_steps=30, stage2_steps=30, stage3_steps=20, batch_size=32, stage1_pool=400,
        stage2_pool=400, val_samples=100, model=dict(TINY_MODEL),
    )  # fmt: skip
    base.update(kw)
    return make_config(T.TrainConfig, "cpu", **base)


def load_model(folder: Path) -> tuple[AmodalVAE, dict, float]:
    model = AmodalVAE.from_folder(folder)
    return model, model.folder_config, model.threshold


# -- data --------------------------------------------------------------------------------------------
def test_complete_rule() -> None:
    a = np.zeros((20, 20), bool)
    a[2:6, 2:6] = True
    b = np.zeros_like(a)
    b[6:9, 6:9] = True  # touches a diagonally (8-neighbour)
    c = np.zeros_like(a)
    c[12:16, 12:16] = True
    d = np.zeros_like(a)
    d[15:20, 0:3] = True  # on the border
    assert is_complete([a, b, c, d]) == [False, False, True, False]


def test_training_data_never_reads_amodal_labels() -> None:
    ds = make_dataset(8, seed=3)
    corrupt = make_dataset(8, seed=3)
    for im in corrupt.images:
        for k, inst in enumerate(im.instances):
            # wrong masks, wrong boxes, or nothing at all
            if k % 2:
                inst.amodal_segm = None
                inst.amodal_box = None
            else:
                inst.amodal_segm = {"size": [1, 1], "counts": "garbage"}
                inst.amodal_box = np.array([-5.0, -5.0, 1e6, 1e6])
    a = extract_instances(ds)
    b = extract_instances(corrupt)
    for f in ("ids", "visible_box", "vis28", "context", "region", "complete"):
        assert np.array_equal(getattr(a.real, f), getattr(b.real, f)), f
    assert all(
        np.array_equal(x, y) for x, y in zip(a.complete_shapes, b.complete_shapes, strict=True)
    )
    # stage batches are identical too
    s1 = augmented_complete(a.complete_shapes, 50, np.random.default_rng(0))
    s2 = augmented_complete(b.complete_shapes, 50, np.random.default_rng(0))
    assert np.array_equal(s1, s2)
    o1 = synthetic_occlusion(a.complete_shapes, a.occluder_shapes, 50, np.random.default_rng(1))
    o2 = synthetic_occlusion(b.complete_shapes, b.occluder_shapes, 50, np.random.default_rng(1))
    assert np.array_equal(o1.vis28, o2.vis28) and np.array_equal(o1.full28, o2.full28)
    # and the data differ from the amodal truth where instances are occluded: the visible crop of
    # an occluded instance is not its amodal crop (so the test could fail)
    assert (~a.real.complete).any()


def test_synthetic_occlusion_is_consistent() -> None:
    ds = make_dataset(8, seed=1)
    p = extract_instances(ds)
    s = synthetic_occlusion(
        p.complete_shapes,
        p.occluder_shapes,
        60,
        np.random.default_rng(0),
        with_region=True,
        unoccluded_fraction=0.0,
    )
    assert s.vis28.shape == (60, 1, 28, 28) and s.context.shape == (60, 2, 32, 32)
    # the amodal box contains the visible box; visible ⊆ full in the region frame
    assert (s.rel_box[:, :2] <= 1e-6).all() and (s.rel_box[:, 2:] >= 1 - 1e-6).all()
    assert ((s.vis_region > 0.5) & ~(s.full_region > 0.5)).sum() <= 0.01 * (
        s.vis_region > 0.5
    ).sum()
    assert (s.occluded > 0).mean() > 0.8 and (s.occluded <= 0.9).all()
    # the occluder channel never overlaps the visible channel much
    assert ((s.context[:, 0] > 0.5) & (s.context[:, 1] > 0.5)).sum() < 0.02 * (
        s.context[:, 0] > 0.5
    ).sum()


def test_known_pixel_targets_ignore_occluders_and_outside() -> None:
    r = 84
    region = np.zeros((1, r, r), np.uint8)
    region[0] |= BIT_INSIDE
    region[0, 28:56, 28:56] |= BIT_SELF  # the visible box: the middle third of the frame
    region[0, 28:56, 56:77] |= BIT_OTHERS  # an occluder to the right
    region[0, :, 77:] &= ~np.uint8(BIT_INSIDE)  # beyond the image border
    # amodal box = visible box extended to the right by one visible-box width
    target, known = known_pixel_targets(
        region, np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[14.0, 14.0]])
    )
    t, k = target[0, 0], known[0, 0]
    assert t[:, :13].mean() > 0.9 and t[:, 15:].max() < 0.1  # visible half is the target
    assert k[:, :13].min() > 0.9  # visible pixels known
    assert k[2:-2, 16:].max() < 0.1  # under the occluder: unknown
    target, known = known_pixel_targets(
        region, np.array([[-1.0, 0.0, 1.0, 1.0]]), np.array([[14.0, 14.0]])
    )
    assert known[0, 0, 2:-2, :12].min() > 0.9  # visible background on the left: known, target 0
    assert target[0, 0, :, :12].max() < 0.1


# -- stages ------------------------------------------------------------------------------------------
def _stage_losses(run: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        d = json.loads(line)
        out.setdefault(d["stage"], []).append(d.get("recon", d.get("recon_known")))
    return out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("amodal") / "run"
    ds = make_dataset(16, seed=0)
    cfg = tiny_cfg(
        stage1_steps=60,
        stage2_steps=60,
        stage3_steps=40,
        stage1_lr=3e-3,
        stage2_lr=3e-3,
        stage3_lr=1e-3,
    )
    summary = T.train(ds, out, cfg, DistContext(), log=lambda m: None, opts=OPTS)
    return out, summary


def test_each_stage_loss_decreases(trained_run) -> None:
    out, summary = trained_run
    losses = _stage_losses(out)
    assert set(losses) == {"stage1", "stage2", "stage3"}
    for stage, values in losses.items():
        first = np.mean(values[:2])
        last = np.mean(values[-2:])
        assert last < 0.9 * first, (stage, values)
    for k in (1, 2, 3):
        assert (out / f"stage{k}.done").is_file()
    assert (out / "DONE").is_file()
    model, header, t = load_model(out / "model")
    assert (
        header["threshold"] == pytest.approx(t) == pytest.approx(summary["validation"]["threshold"])
    )
    assert header["training"]["stages"]["stage1"]["steps"] == 60


def test_stage2_freezes_decoder_and_stage3_freezes_box_head(trained_run) -> None:
    out, _ = trained_run
    ck = {
        p.name.split("-")[0]: torch.load(p, weights_only=True)
        for p in sorted((out / "checkpoints").glob("*.pt"))
    }
    s1, s2, s3 = (ck[f"stage{k}"]["objects"]["model"] for k in (1, 2, 3))
    for k in s1:
        if k.startswith(("decoder.", "enc_full.")):
            assert torch.equal(s1[k], s2[k]) and torch.equal(s2[k], s3[k]), k
        if k.startswith("box_head."):
            assert torch.equal(s2[k], s3[k]), k
    changed = [
        k
        for k in s2
        if k.startswith("enc_partial.") and k.endswith("weight") and not torch.equal(s2[k], s3[k])
    ]
    assert changed  # stage 3 trains q2


def test_rerun_of_finished_run_skips_stages(trained_run) -> None:
    out, _ = trained_run
    ds = make_dataset(16, seed=0)
    cfg = tiny_cfg(
        stage1_steps=60,
        stage2_steps=60,
        stage3_steps=40,
        stage1_lr=3e-3,
        stage2_lr=3e-3,
        stage3_lr=1e-3,
    )
    before = (out / "metrics.jsonl").read_text()
    summary = T.train(ds, out, cfg, DistContext(), log=lambda m: None, opts=OPTS)
    assert summary["stages"] == {}
    assert (out / "metrics.jsonl").read_text() == before
    # a different config is refused
    with pytest.raises(MaskgenError, match="different config"):
        T.train(ds, out, tiny_cfg(stage1_steps=61), DistContext(), log=lambda m: None, opts=OPTS)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    torch.set_num_threads(1)
    ds = make_dataset(8, seed=0)
    calls = {"n": 0}
    real = T._recon

    def poisoned(logits, target, weight=None):
        calls["n"] += 1
        out = real(logits, target, weight)
        return out * float("nan") if calls["n"] > 25 else out

    monkeypatch.setattr(T, "_recon", poisoned)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as e:
        T.train(ds, out, tiny_cfg(), DistContext(), log=lambda m: None, opts=OPTS)
    msg = str(e.value)
    assert "\n" not in msg and "stage1 loss became nan at step 25" in msg and "checkpoints" in msg
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["stage1-00000010.pt", "stage1-00000020.pt"]
    state = torch.load(out / "checkpoints" / "stage1-00000020.pt", weights_only=True)
    weights = state["objects"]["model"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert not (out / "stage1.done").exists() and not (out / "model").exists()


def test_nan_loss_through_cli_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    from maskgen.cli.main import main

    torch.set_num_threads(1)
    ds = make_dataset(8, seed=0)
    write_coco(ds, tmp_path / "train.json")
    monkeypatch.setattr(
        T, "_recon", lambda logits, target, weight=None: logits.flatten(1).sum(1) * float("nan")
    )
    rc = main(
        [
            "amodal",
            "train",
            "--data",
            str(tmp_path / "train.json"),
            "--out",
            str(tmp_path / "run"),
            *TINY_FLAGS,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("maskgen: error: stage1 loss became nan at step 0")


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, capsys) -> None:
    torch.set_num_threads(1)
    ds = make_dataset(8, seed=0)
    out = tmp_path / "run"
    cfg = tiny_cfg()
    T.train(ds, out, cfg, DistContext(), log=lambda m: None, opts=OPTS)
    # pretend the run died in stage 3 with its newest checkpoint half-written
    (out / "stage3.done").unlink()
    (out / "DONE").unlink()
    shutil.rmtree(out / "model")
    newest = out / "checkpoints" / "stage3-00000020.pt"
    newest.write_bytes(newest.read_bytes()[:200])
    summary = T.train(ds, out, cfg, DistContext(), log=lambda m: None, opts=OPTS)
    assert "unreadable checkpoint" in capsys.readouterr().err
    assert summary["stages"]["stage3"]["resumed_from"] == 10
    load_model(out / "model")


# -- the command -------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_cli_tiny_three_stages_writes_loadable_model(tmp_path) -> None:
    ds = make_dataset(12, seed=2)
    write_coco(ds, tmp_path / "train.json")
    write_coco(make_dataset(4, seed=9), tmp_path / "val.json")
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "maskgen", "amodal", "train", "--data", str(tmp_path / "train.json"),
         "--val", str(tmp_path / "val.json"), "--out", str(out), *TINY_FLAGS, "--threads", "1"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "model written to" in r.stderr
    model, header, t = load_model(out / "model")
    assert header["config"]["widths"] == [8, 8] and 0 < t < 1
    assert json.loads((out / "config.json").read_text())["kind"] == "amodal-vae"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines if d["stage"] == "stage1"] == [5, 10, 15, 20, 25, 30]
    # the same command again: nothing to do, same model
    before = (out / "model" / "model.safetensors").read_bytes()
    r = subprocess.run(
        [sys.executable, "-m", "maskgen", "amodal", "train", "--data", str(tmp_path / "train.json"),
         "--val", str(tmp_path / "val.json"), "--out", str(out), *TINY_FLAGS],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert r.returncode == 0 and "already done" in r.stderr
    assert (out / "model" / "model.safetensors").read_bytes() == before


def test_box_extension_loss_is_l1_at_the_median_and_asymmetric_below() -> None:
    target = torch.tensor([[0.0, 0.2, 0.0, 0.0]])
    over = torch.tensor([[0.1, 0.2, 0.0, 0.0]])  # extends where the true box does not
    under = torch.tensor([[0.0, 0.1, 0.0, 0.0]])  # short of the true box by the same 0.1
    assert T.box_extension_loss(over, target, 0.5).item() == pytest.approx(0.1)
    assert T.box_extension_loss(under, target, 0.5).item() == pytest.approx(0.1)
    # tau = 0.3: over-extension costs 1.4 x 0.1, falling short 0.6 x 0.1
    assert T.box_extension_loss(over, target, 0.3).item() == pytest.approx(0.14)
    assert T.box_extension_loss(under, target, 0.3).item() == pytest.approx(0.06)


def test_cli_bad_inputs(tmp_path) -> None:
    from maskgen.cli.main import main

    ds = make_dataset(4, seed=2)
    write_coco(ds, tmp_path / "train.json")
    args = ["amodal", "train", "--data", str(tmp_path / "train.json"), "--out", str(tmp_path / "q")]
    for flag, bad in (("--box-quantile", "0"), ("--box-quantile", "1.5"), ("--threads", "0")):
        assert main([*args, flag, bad]) == 2
        assert not (tmp_path / "q").exists()
    assert (
        main(
            [
                "amodal",
                "train",
                "--data",
                str(tmp_path / "missing.json"),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "amodal",
                "train",
                "--data",
                str(tmp_path / "train.json"),
                "--out",
                str(tmp_path / "r"),
                "--stage1-steps",
                "0",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "amodal",
                "train",
                "--data",
                str(tmp_path / "train.json"),
                "--out",
                str(tmp_path / "r"),
                "--widths",
                "a,b",
            ]
        )
        == 2
    )
    # a dataset without complete instances
    for im in ds.images:
        im.instances = im.instances[:0]
    write_coco(ds, tmp_path / "empty.json")
    assert (
        main(
            [
                "amodal",
                "train",
                "--data",
                str(tmp_path / "empty.json"),
                "--out",
                str(tmp_path / "r2"),
                *TINY_FLAGS,
            ]
        )
        == 2
    )


def test_kill_mid_stage_and_resume(tmp_path) -> None:
    ds = make_dataset(12, seed=4)
    write_coco(ds, tmp_path / "train.json")
    out = tmp_path / "run"
    flags = [*TINY_FLAGS]
    flags[flags.index("--stage1-steps") + 1] = "150"
    cmd = [
        sys.executable,
        "-m",
        "maskgen",
        "amodal",
        "train",
        "--data",
        str(tmp_path / "train.json"),
        "--out",
        str(out),
        *flags,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), start_new_session=True
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            ck = (
                list((out / "checkpoints").glob("stage1-*.pt"))
                if (out / "checkpoints").is_dir()
                else []
            )
            if len(ck) >= 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "stage1.done").exists()
    killed_at = max(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("stage1-*.pt"))
    assert 0 < killed_at < 150
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=400)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["stage1"]["resumed_from"] >= killed_at
    assert summary["stages"]["stage1"]["steps"] == 150 - summary["stages"]["stage1"]["resumed_from"]
    load_model(out / "model")


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path) -> None:
    ds = make_dataset(12, seed=5)
    write_coco(ds, tmp_path / "train.json")
    out = tmp_path / "run"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    r = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "maskgen", "amodal", "train",
         "--data", str(tmp_path / "train.json"), "--out", str(out), *TINY_FLAGS],
        capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    model, header, t = load_model(out / "model")
    assert header["training"]["world_size"] == 2
    # only rank 0 wrote: one line per logging tick
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines if d["stage"] == "stage1"] == [5, 10, 15, 20, 25, 30]


def test_half_written_checkpoint_resume_through_cli_equals_uninterrupted(tmp_path, capsys) -> None:
    """Pause with --stop-after, cut the newest checkpoint in half (a kill during a non-atomic
    write), rerun: a one-line warning, resume from the previous checkpoint, and the same model
    bit for bit as an uninterrupted run (RNG state and data pools come back exactly)."""
    from maskgen.cli.main import main

    torch.set_num_threads(1)
    write_coco(make_dataset(10, seed=6), tmp_path / "train.json")
    base = ["amodal", "train", "--data", str(tmp_path / "train.json"), *TINY_FLAGS, "--quiet"]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "paused"
    assert main([*base, "--out", str(out), "--stop-after", "12"]) == 0
    assert "paused" in capsys.readouterr().err
    assert not (out / "stage1.done").exists() and not (out / "model").exists()
    newest = out / "checkpoints" / "stage1-00000012.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    assert main([*base, "--out", str(out)]) == 0
    assert "unreadable checkpoint" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["stage1"]["resumed_from"] == 10
    a = (tmp_path / "whole" / "model" / "model.safetensors").read_bytes()
    assert (out / "model" / "model.safetensors").read_bytes() == a


def test_generated_flags_cover_every_setting() -> None:
    """Every TrainConfig field with a flag and every RunOptions field is reachable."""
    import dataclasses

    from maskgen.cli.main import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["amodal"]
    train = sub._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions}
    for cls in (T.TrainConfig, RunOptions):
        for f in dataclasses.fields(cls):
            if f.metadata.get("flag", True) and f.name != "preset":
                assert f.name in dests, f.name
    assert {"preset", "widths", "fc_dim", "out"} <= dests


def test_resume_compares_resolved_paths_and_ignores_run_options(tmp_path, monkeypatch) -> None:
    """The resume check holds model and path fields only, paths resolved: a relative --data
    and its absolute spelling are the same run, and threads/intervals may change."""
    from maskgen.cli.main import main

    torch.set_num_threads(1)
    write_coco(make_dataset(8, seed=7), tmp_path / "train.json")
    monkeypatch.chdir(tmp_path)
    flags = [*TINY_FLAGS, "--quiet", "--out", "run"]
    assert main(["amodal", "train", "--data", "train.json", *flags, "--stop-after", "3"]) == 0
    flags[flags.index("--log-every") + 1] = "7"
    absolute = str(tmp_path / "train.json")
    assert main(["amodal", "train", "--data", absolute, *flags, "--threads", "1"]) == 0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    header = json.loads((tmp_path / "run" / "config.json").read_text())
    assert header["config"]["data"] == absolute
    assert "log_every" not in header["config"] and "threads" not in header["config"]
