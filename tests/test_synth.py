"""Mask-conditioned instance synthesis (supplementary §3.4): training pairs, networks, training on
the engine loop with resume, the MaskSynthesizer contract, load_synthesizer and the shipped model
(tiny configs, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from _cli import run_cli
from _inpaint_tiny import make_tiny_scenes
from maskgen.data.loader import load_dataset
from maskgen.errors import MaskgenError
from maskgen.synthesis import SHIPPED_SYNTH, MaskSynthesizer, load_synthesizer
from maskgen.synthesis.data import load_synth_data, random_deformation, synth_batch
from maskgen.synthesis.model import MultiscaleDiscriminator, SpadeGenerator, SynthNetConfig

TRAIN_FLAGS = ["--preset", "tiny", "--quiet", "--threads", "1"]


def synth_args(scenes: Path, out: Path, *extra: str) -> list[str]:
    """``synth train`` argv on the tiny scenes' training split."""
    return [
        "synth", "train",
        "--data", str(scenes / "annotations" / "train_coco.json"),
        "--images", str(scenes / "images" / "train"),
        "--out", str(out), *TRAIN_FLAGS, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory) -> Path:
    return make_tiny_scenes(tmp_path_factory)


@pytest.fixture(scope="module")
def data(tiny_scenes: Path):
    ds = load_dataset(tiny_scenes / "annotations" / "train_coco.json")
    return load_synth_data(ds, tiny_scenes / "images" / "train", 32)


@pytest.fixture(scope="module")
def trained(tiny_scenes: Path, tmp_path_factory) -> Path:
    from maskgen.cli.main import main

    out = tmp_path_factory.mktemp("synth-run") / "run"
    assert main(synth_args(tiny_scenes, out)) == 0
    return out


def _instance(size: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image with a red/blue striped ellipse on grey; its mask and a deformed new mask."""
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - 24) / 12.0) ** 2 + ((xx - 22) / 15.0) ** 2 <= 1
    image = np.full((size, size, 3), 120, np.uint8)
    image[mask & (xx % 4 < 2)] = (200, 30, 30)
    image[mask & (xx % 4 >= 2)] = (30, 30, 200)
    new = ((yy - 26) / 10.0) ** 2 + ((xx - 26) / 17.0) ** 2 <= 1
    return image, mask, new


def test_training_pairs(data) -> None:
    assert data.patches.shape[1:] == (32, 32, 3) and len(data.patches) == len(data.masks) > 0
    b = synth_batch(np.random.default_rng(0), data, 6)
    assert b.image.shape == (6, 3, 32, 32) and b.new.shape == (6, 1, 32, 32)
    assert b.visible.sum(axis=(1, 2, 3)).min() > 0 and b.new.sum(axis=(1, 2, 3)).min() > 0
    vis = np.broadcast_to(b.visible.astype(bool), b.image.shape)
    np.testing.assert_array_equal(b.coarse[vis], b.image[vis])  # known pixels are kept
    hidden = (b.new * (1 - b.visible)).sum(axis=(1, 2, 3))
    assert (hidden > 0).mean() >= 0.5, "most pairs must have pixels to synthesise"
    again = synth_batch(np.random.default_rng(0), data, 6)
    np.testing.assert_array_equal(again.new, b.new)


def test_random_deformation_changes_the_shape() -> None:
    _, mask, _ = _instance()
    out = random_deformation(np.random.default_rng(3), mask)
    assert out.shape == mask.shape and out.dtype == bool and out.any()
    iou = (out & mask).sum() / (out | mask).sum()
    assert 0.3 < iou < 1.0


def test_networks_shapes_and_identity_start() -> None:
    cfg = SynthNetConfig(width=4, style_dim=3, spade_hidden=4, crop_size=32)
    gen = SpadeGenerator(cfg)
    coarse = torch.rand(2, 3, 32, 32) * 2 - 1
    m = (torch.rand(2, 1, 32, 32) > 0.5).float()
    out, mu, logvar = gen(coarse, m, m, sample=True)
    assert out.shape == (2, 3, 32, 32) and mu.shape == logvar.shape == (2, 3)
    assert torch.equal(out, coarse), "an untrained generator returns the coarse fill"
    d = MultiscaleDiscriminator(4, scales=2, layers=3)
    feats = d(out, m)
    assert len(feats) == 2 and feats[0][-1].shape[1] == 1


def test_train_writes_model_and_samples(trained: Path) -> None:
    assert (trained / "DONE").is_file() and (trained / "samples.png").is_file()
    header = json.loads((trained / "model" / "config.json").read_text())
    assert header["kind"] == "mask-synth" and header["config"]["crop_size"] == 32
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 4 and {"loss_d", "loss_feat", "mae_hidden"} <= set(lines[-1])


def test_resume_after_stop_equals_uninterrupted(
    tiny_scenes: Path, trained: Path, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    rc, _, _ = run_cli(
        synth_args(tiny_scenes, out, "--stop-after", "2", "--checkpoint-every", "1"), capsys
    )
    assert rc == 0 and not (out / "DONE").exists() and not (out / "model").exists()
    rc, _, _ = run_cli(synth_args(tiny_scenes, out), capsys)
    assert rc == 0 and (out / "DONE").is_file()
    a = load_file(str(trained / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_finished_run_is_kept_unless_force(tiny_scenes: Path, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli(synth_args(tiny_scenes, out), capsys)[0] == 0
    before = (out / "DONE").read_text()
    rc, _, err = run_cli(synth_args(tiny_scenes, out, "--steps", "2"), capsys)
    assert rc == 2 and "different config" in err
    rc, _, err = run_cli(synth_args(tiny_scenes, out), capsys)
    assert rc == 0 and (out / "DONE").read_text() == before
    rc, _, _ = run_cli(synth_args(tiny_scenes, out, "--steps", "2", "--force"), capsys)
    assert rc == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 2 and all(x["step"] <= 2 for x in lines)


def test_synthesizer_contract(trained: Path) -> None:
    syn = MaskSynthesizer.from_folder(trained)  # a run folder: its model/ is used
    image, visible, new = _instance()
    out = syn.synthesize(image, visible, new)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~new], image[~new])  # outside the new mask: unchanged
    np.testing.assert_array_equal(out[new & visible], image[new & visible])  # keep_visible
    flipped = new[:, ::-1].copy()
    many = syn.synthesize_many(image, visible, [new, flipped])
    np.testing.assert_array_equal(many[0], out)
    np.testing.assert_array_equal(many[1], syn.synthesize(image, visible, flipped))
    # a barely trained model stays near the visible colours (red/blue; green 30), not the
    # grey (120) background around them
    pix = out[new & ~visible].astype(int)
    assert pix[:, 1].max() < 60 and (pix[:, 0] + pix[:, 2]).min() > 180


def test_synthesizer_rejects_bad_input(trained: Path) -> None:
    syn = load_synthesizer(trained)
    image, visible, new = _instance()
    cases = [
        ((image.astype(np.float32), visible, new), "uint8"),
        ((image[..., 0], visible, new), "H x W x 3"),
        ((image, visible.astype(np.uint8), new), "bool"),
        ((image, visible, new[:-1]), "new_mask 0 is"),
        ((image, np.zeros_like(visible), new), "visible is empty"),
        ((image, visible, np.zeros_like(new)), "new_mask 0 is empty"),
    ]
    for args, needle in cases:
        with pytest.raises(MaskgenError, match=needle):
            syn.synthesize(*args)


def test_load_synthesizer_errors(tmp_path: Path) -> None:
    with pytest.raises(MaskgenError, match="not found"):
        load_synthesizer(tmp_path / "nope")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"kind": "inpainter", "config": {}}))
    with pytest.raises(MaskgenError, match="expected mask-synth"):
        load_synthesizer(other)


@pytest.mark.skipif(
    not (SHIPPED_SYNTH / "model.safetensors").is_file(), reason="shipped model not installed"
)
def test_shipped_model_runs_offline() -> None:
    syn = load_synthesizer(None)
    assert load_synthesizer("builtin") is syn
    image, visible, new = _instance(96)
    out = syn.synthesize(image, visible, new)
    hidden = new & ~visible
    # the striped red/blue instance is re-rendered in its own colours, not the grey background
    pix = out[hidden].astype(int)
    assert (np.abs(pix - 120).max(axis=1) > 40).mean() > 0.8
    assert pix[:, 1].mean() < 90  # no green: the material's colours


@pytest.mark.slow
def test_torchrun_two_processes(tiny_scenes: Path, tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys

    out = tmp_path / "run"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    argv = synth_args(tiny_scenes, out, "--log-every", "2")
    r = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "maskgen", *argv],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "DONE").is_file()
    MaskSynthesizer.from_folder(out)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines] == [2, 4]  # only rank 0 logs
