"""Learned inpainting (supplementary §3.3): samplers, network, training on the engine loop with
resume, the LearnedInpainter contract and load_inpainter (tiny configs, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from _cli import run_cli
from _inpaint_tiny import make_tiny_scenes, train_args
from maskgen.data.loader import load_dataset
from maskgen.errors import MaskgenError
from maskgen.inpainting import LearnedInpainter, TeleaInpainter, load_inpainter
from maskgen.inpainting.learned import BUILTIN_INPAINTER
from maskgen.inpainting.model import InpaintModel, InpaintNetConfig
from maskgen.inpainting.samplers import (
    background_batch,
    coarse_fill,
    complete_instances,
    instance_batch,
    instance_window,
    load_inpaint_data,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory) -> Path:
    return make_tiny_scenes(tmp_path_factory)


@pytest.fixture(scope="module")
def data(tiny_scenes: Path):
    ds = load_dataset(tiny_scenes / "annotations" / "train_coco.json")
    return load_inpaint_data(ds, tiny_scenes / "images" / "train", 32)


@pytest.fixture(scope="module")
def trained(tiny_scenes: Path, tmp_path_factory) -> Path:
    from maskgen.cli.main import main

    out = tmp_path_factory.mktemp("inpaint-run") / "run"
    assert main(train_args(tiny_scenes, out)) == 0
    return out


def test_complete_rule() -> None:
    a = np.zeros((40, 40), bool)
    a[2:12, 2:12] = True
    b = np.zeros_like(a)
    b[12:22, 12:22] = True  # touches a diagonally (8-neighbourhood)
    c = np.zeros_like(a)
    c[25:39, 0:10] = True  # touches the border
    d = np.zeros_like(a)
    d[2:12, 25:35] = True  # isolated
    assert complete_instances([a, b, c, d]) == [False, False, False, True]


def test_background_batch_masks(data) -> None:
    rng = np.random.default_rng(0)
    b = background_batch(rng, data, 6, 32, (5.0, 25.0))
    assert b.image.shape == (6, 3, 32, 32) and b.hole.shape == (6, 1, 32, 32)
    assert b.image.min() >= -1 and b.image.max() <= 1
    assert not (b.given * b.hole).any(), "given and hole overlap"
    assert (b.target <= b.hole).all(), "target outside the hole"
    assert b.hole.sum() > 0 and b.target.sum() > 0
    given = b.given.astype(bool)
    np.testing.assert_array_equal(b.coarse[np.broadcast_to(given, b.coarse.shape)],
                                  b.image[np.broadcast_to(given, b.image.shape)])  # fmt: skip


def test_instance_batch_masks(data) -> None:
    rng = np.random.default_rng(1)
    b = instance_batch(rng, data, 8)
    assert (b.hole <= b.amodal).all(), "instance hole outside the instance"
    np.testing.assert_array_equal(b.given + b.hole, b.amodal)
    frac = b.hole.sum(axis=(1, 2, 3)) / b.amodal.sum(axis=(1, 2, 3))
    assert (frac > 0).all() and (frac < 1).all()
    assert set(b.label.tolist()) <= set(data.patch_labels.tolist())


def test_sampling_is_deterministic(data) -> None:
    a = background_batch(np.random.default_rng(5), data, 3, 32, (5.0, 25.0))
    b = background_batch(np.random.default_rng(5), data, 3, 32, (5.0, 25.0))
    np.testing.assert_array_equal(a.hole, b.hole)
    np.testing.assert_array_equal(a.image, b.image)


def test_coarse_fill_and_window() -> None:
    img = np.full((16, 16, 3), 200, np.uint8)
    given = np.ones((16, 16), bool)
    given[4:8, 4:8] = False
    out = coarse_fill(img, given, ~given)
    assert np.abs(out.astype(int) - 200).max() <= 3  # Telea rounds
    assert (coarse_fill(img, np.zeros_like(given), ~given) == 128).all()
    half = np.zeros_like(given)
    half[:, :8] = True
    img[:, :8] = 10
    out = coarse_fill(img, half, np.zeros_like(given))  # push-pull only
    assert np.abs(out.astype(int) - 10).max() <= 1
    out = coarse_fill(img, half, np.zeros_like(given), "nearest")
    assert (out == 10).all()
    m = np.zeros((50, 50), bool)
    m[10:20, 30:50] = True
    x0, y0, x1, y1 = instance_window(m)
    assert x1 - x0 == y1 - y0 and x0 <= 30 and x1 >= 50 and y0 <= 10 and y1 >= 20


def test_untrained_model_returns_the_coarse_fill() -> None:
    model = InpaintModel(InpaintNetConfig(width=4, labels=[1, 2]))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    m = torch.ones(2, 1, 16, 16)
    assert model.residual_background(x, m, m).abs().max() == 0
    r = model.residual_instance(x, m, m, m, torch.tensor([0, 2]))
    assert r.shape == (2, 3, 16, 16) and r.abs().max() == 0
    assert model.label_index(2) == 2 and model.label_index(99) == 0


def test_train_writes_model_and_logs(trained: Path) -> None:
    assert (trained / "DONE").is_file()
    assert (trained / "model" / "model.safetensors").is_file()
    header = json.loads((trained / "model" / "config.json").read_text())
    assert header["kind"] == "inpainter" and header["config"]["crop_size"] == 32
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 4 and "hole_mae_background" in lines[-1]


def test_resume_after_stop_equals_uninterrupted(
    tiny_scenes: Path, trained: Path, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    rc, _, _ = run_cli(
        train_args(tiny_scenes, out, "--stop-after", "2", "--checkpoint-every", "1"), capsys
    )
    assert rc == 0 and not (out / "DONE").exists() and not (out / "model").exists()
    rc, _, _ = run_cli(train_args(tiny_scenes, out), capsys)
    assert rc == 0 and (out / "DONE").is_file()
    a = load_file(str(trained / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_finished_run_is_not_retrained(tiny_scenes: Path, trained: Path, capsys) -> None:
    before = (trained / "model" / "model.safetensors").read_bytes()
    rc, _, _ = run_cli(train_args(tiny_scenes, trained, "--no-quiet"), capsys)
    assert rc == 0
    assert (trained / "model" / "model.safetensors").read_bytes() == before


def _scene(tiny_scenes: Path):
    ds = load_dataset(tiny_scenes / "annotations" / "test_coco.json")
    from maskgen.core.io import read_image

    rec = next(r for r in ds.images if len(r.instances) >= 2)
    img = read_image(tiny_scenes / "images" / "test" / rec.file_name)
    vis = [rec.visible_mask(i) for i in rec.instances]
    return img, vis, rec.instances


@pytest.mark.parametrize("spec", ["learned", "telea"])
def test_inpainter_contract(spec: str, tiny_scenes: Path, trained: Path) -> None:
    inp = load_inpainter(trained if spec == "learned" else "telea")
    assert isinstance(inp, LearnedInpainter if spec == "learned" else TeleaInpainter)
    img, vis, insts = _scene(tiny_scenes)
    fg = np.any(vis, axis=0)
    hole = vis[0].copy()
    hole[0, :] = True  # a hole touching the border
    out = inp.inpaint_background(img, hole, ~fg & ~hole)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out[~hole], img[~hole])
    amodal = vis[1]
    ys, xs = np.nonzero(amodal)
    ihole = amodal & (ys.mean() <= np.arange(64)[:, None])
    out = inp.inpaint_instance(img, ihole, amodal & ~ihole, amodal, insts[1].category_id)
    np.testing.assert_array_equal(out[~ihole], img[~ihole])
    empty = np.zeros_like(hole)
    np.testing.assert_array_equal(inp.inpaint_background(img, empty, ~fg), img)
    out = inp.inpaint_background(img, fg, ~fg)  # every object at once (several components)
    np.testing.assert_array_equal(out[~fg], img[~fg])


def test_learned_on_non_square_image_and_unknown_label(trained: Path) -> None:
    inp = LearnedInpainter.from_folder(trained)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 90, 3), dtype=np.uint8)
    hole = np.zeros((40, 90), bool)
    hole[5:30, 60:88] = True
    out = inp.inpaint_background(img, hole, ~hole)
    np.testing.assert_array_equal(out[~hole], img[~hole])
    amodal = np.zeros_like(hole)
    amodal[2:38, 50:89] = True
    out = inp.inpaint_instance(img, hole, amodal & ~hole, amodal, label=12345)
    assert out.shape == img.shape


def test_save_and_load_folder_roundtrip(trained: Path, tmp_path) -> None:
    inp = LearnedInpainter.from_folder(trained / "model")
    inp.save_folder(tmp_path / "copy")
    again = LearnedInpainter.from_folder(tmp_path / "copy")
    for (k, a), (_, b) in zip(
        inp.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k


def test_load_inpainter_errors(tmp_path) -> None:
    with pytest.raises(MaskgenError, match="model folder not found"):
        load_inpainter(tmp_path / "nope")
    amodal = REPO / "src" / "maskgen" / "models" / "amodal-vae-builtin"
    with pytest.raises(MaskgenError, match="expected inpainter"):
        load_inpainter(amodal)
    if not (BUILTIN_INPAINTER / "model.safetensors").is_file():
        with pytest.raises(MaskgenError, match="not installed"):
            load_inpainter("builtin")
    else:
        assert isinstance(load_inpainter(None), LearnedInpainter)


def test_resume_after_kill(tiny_scenes: Path, tmp_path, capsys) -> None:
    """SIGKILL a training process once it has checkpointed; the same command then resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    argv = train_args(tiny_scenes, out, "--steps", "60", "--checkpoint-every", "1")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "maskgen", *argv], env=env)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "checkpoints").glob("ckpt-*.pt")) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "DONE").exists(), "finished before it could be killed"
    rc, _, err = run_cli([*argv, "--no-quiet"], capsys)
    assert rc == 0 and (out / "DONE").is_file()
    assert "resuming" in err
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 60


def test_sampling_workers_give_the_same_run(
    tiny_scenes: Path, trained: Path, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    rc, _, _ = run_cli(train_args(tiny_scenes, out, "--workers", "2"), capsys)
    assert rc == 0
    a = load_file(str(trained / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_label_drop_shows_unknown_category(data, share: float) -> None:
    from maskgen.engine import make_config
    from maskgen.inpainting.training import UNKNOWN_LABEL, InpaintConfig, make_batches

    cfg = make_config(InpaintConfig, "tiny", batch_size=6, label_drop=share)
    _, ins = make_batches(cfg, data, 0)
    dropped = ins.label == UNKNOWN_LABEL
    assert dropped.all() if share == 1.0 else not dropped.any()
    model = InpaintModel(InpaintNetConfig(width=4, labels=[1, 2]))
    assert model.label_index(UNKNOWN_LABEL) == 0


def test_make_inpainter_names() -> None:
    from maskgen.cli.amodal_edit import make_inpainter

    assert isinstance(make_inpainter("telea"), TeleaInpainter)
    if (BUILTIN_INPAINTER / "model.safetensors").is_file():
        assert isinstance(make_inpainter("builtin"), LearnedInpainter)
        assert isinstance(make_inpainter(None), LearnedInpainter)
        with pytest.raises(MaskgenError, match="--device"):
            make_inpainter("builtin", "gpu")
    with pytest.raises(MaskgenError, match="'builtin'"):
        make_inpainter("no/such/run")
