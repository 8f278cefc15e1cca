"""Tests of the shared training engine (src/maskgen/engine, docs/engine.md)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from maskgen.core.io import read_image
from maskgen.engine import (
    DistContext,
    RunFolder,
    all_reduce_mean,
    autocast_context,
    capture_rng_state,
    check_finite,
    init_distributed,
    load_cached,
    load_model_folder,
    load_state_dict_strict,
    make_grad_scaler,
    progress,
    restore_rng_state,
    save_image_grid,
    save_model_folder,
    seed_everything,
    unwrap,
    wrap_ddp,
)
from maskgen.errors import MaskgenError, NonFiniteLossError

TOY = Path(__file__).with_name("engine_toy_train.py")
CTX = DistContext()


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def _tiny_model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


# ----------------------------------------------------------------------------- run folder
def test_run_folder_create_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = RunFolder(out, kind="amodal-vae", config={"lr": 1e-3, "sizes": (1, 2)}, ctx=CTX)
    header = json.loads((out / "config.json").read_text())
    assert header["kind"] == "amodal-vae"
    assert header["config"] == {"lr": 1e-3, "sizes": [1, 2]}
    assert "maskgen_version" in header
    assert run.model_dir() == out / "model"
    assert run.load_latest_checkpoint() is None
    # Same config (tuples and lists compare equal after the JSON round trip): resume is fine.
    RunFolder(out, kind="amodal-vae", config={"sizes": [1, 2], "lr": 1e-3}, ctx=CTX)
    assert not run.is_finished("stage1.done")
    run.mark_finished("stage1.done")
    assert run.is_finished("stage1.done") and not run.is_finished()


def test_run_folder_config_mismatch_names_keys(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "r", kind="amodal-vae", config={"lr": 1e-3, "batch": 64, "z": 1})
    run.save_checkpoint(1, {"step": 1})  # something was trained under the first config
    with pytest.raises(MaskgenError) as e:
        RunFolder(tmp_path / "r", kind="amodal-vae", config={"lr": 1e-2, "batch": 64, "w": 1})
    msg = str(e.value)
    assert "lr: 0.001 -> 0.01" in msg and "w: (absent) -> 1" in msg and "z: 1 -> (absent)" in msg
    assert "batch" not in msg and "\n" not in msg and "--out" in msg


def test_run_folder_kind_mismatch(tmp_path: Path) -> None:
    RunFolder(tmp_path / "r", kind="segment-gan", config={}, ctx=CTX)
    with pytest.raises(MaskgenError, match=r"r is a segment-gan run, not a amodal-vae run"):
        RunFolder(tmp_path / "r", kind="amodal-vae", config={}, ctx=CTX)


def test_run_folder_refuses_foreign_folders(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("keep me")
    with pytest.raises(MaskgenError, match="not a maskgen run"):
        RunFolder(tmp_path / "data", kind="amodal-vae", config={}, ctx=CTX)
    assert (tmp_path / "data" / "x.txt").read_text() == "keep me"
    save_model_folder(tmp_path / "m", "amodal-vae", {}, {"w": torch.zeros(1)})
    with pytest.raises(MaskgenError, match="model folder, not a run"):
        RunFolder(tmp_path / "m", kind="amodal-vae", config={}, ctx=CTX)


def test_load_cached_reads_once_per_weights_version(tmp_path: Path) -> None:
    folder = save_model_folder(tmp_path / "m", "toy", {}, {"w": torch.zeros(1)})
    cache: dict[tuple[str, str, str], list[str]] = {}
    calls: list[str] = []

    def load(spec: str | os.PathLike[str], device: str) -> list[str]:
        calls.append(str(spec))
        return [str(spec), device]

    first = load_cached(cache, folder, "cpu", load)
    assert load_cached(cache, folder, "cpu", load) is first and len(calls) == 1
    weights = folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # "retrained"
    assert load_cached(cache, folder, "cpu", load) is not first and len(calls) == 2
    with pytest.raises(MaskgenError, match="model folder not found"):
        load_cached(cache, tmp_path / "nope", "cpu", load)


def test_metrics_log_and_torn_line_repair(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "r", kind="k", config={}, ctx=CTX)
    run.log(10, loss=torch.tensor(0.25), kl=np.float32(2.0), n=3)
    run.log(20, loss=float("nan"))
    lines = run.metrics_path.read_text().splitlines()
    first = json.loads(lines[0])
    assert first["step"] == 10 and first["loss"] == 0.25 and first["kl"] == 2.0 and first["n"] == 3
    assert isinstance(first["time"], float)
    assert json.loads(lines[1])["loss"] == "nan"
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 30, "lo')  # a process killed mid-line
    run2 = RunFolder(tmp_path / "r", kind="k", config={}, ctx=CTX)
    assert [m["step"] for m in run2.read_metrics()] == [10, 20]
    run2.log(30, loss=1.0)
    assert [json.loads(x)["step"] for x in run2.metrics_path.read_text().splitlines()] == [
        10,
        20,
        30,
    ]


def test_non_main_rank_writes_nothing(tmp_path: Path) -> None:
    ctx1 = DistContext(rank=1, world_size=2, local_rank=1, is_main=False)
    run = RunFolder(tmp_path / "r", kind="k", config={}, ctx=ctx1)
    run.log(1, loss=1.0)
    run.save_checkpoint(1, {"step": 1})
    run.mark_finished()
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoint_rotation_and_prefixes(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "r", kind="k", config={}, ctx=CTX, keep=3)
    for s in (100, 200, 300, 400, 500):
        run.save_checkpoint(s, {"step": s, "w": torch.full((2,), float(s))})
    run.save_checkpoint(7, {"step": 7}, prefix="stage2")
    names = sorted(p.name for p in run.checkpoint_dir.iterdir())
    assert names == [
        "ckpt-00000300.pt",
        "ckpt-00000400.pt",
        "ckpt-00000500.pt",
        "stage2-00000007.pt",
    ]
    state = run.load_latest_checkpoint(map_location="cpu")
    assert state is not None and state["step"] == 500 and state["w"].tolist() == [500.0, 500.0]
    assert run.load_latest_checkpoint(prefix="stage2")["step"] == 7
    assert run.load_latest_checkpoint(prefix="stage3") is None


def test_checkpoint_is_weights_only_readable(tmp_path: Path) -> None:
    model = _tiny_model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    run = RunFolder(tmp_path / "r", kind="k", config={}, ctx=CTX)
    path = run.save_checkpoint(
        3,
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "step": 3,
            "rng": capture_rng_state(),
        },
    )
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and set(state) == {"model", "opt", "step", "rng"}
    torch.testing.assert_close(state["model"]["0.weight"], model[0].weight.detach())
    with pytest.raises(TypeError, match=r"state\['extra'\]"):
        run.save_checkpoint(4, {"extra": np.zeros(3)})
    assert [s for s, _ in run.checkpoints()] == [3]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_latest_checkpoint_falls_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    run = RunFolder(tmp_path / "r", kind="k", config={}, ctx=CTX)
    for s in (1, 2):
        run.save_checkpoint(s, {"step": s, "w": torch.randn(1000)})
    newest = run.checkpoints()[-1][1]
    data = newest.read_bytes()
    newest.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00junk" * 50, "empty": b""}[damage]
    )
    state = run.load_latest_checkpoint()
    assert state is not None and state["step"] == 1
    assert run.loaded_checkpoint == run.checkpoints()[0][1]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ckpt-00000002.pt" in err[0] and "falling back" in err[0]
    # Everything corrupt: no state, never a traceback.
    run.checkpoints()[0][1].write_bytes(b"")
    assert run.load_latest_checkpoint() is None


# ------------------------------------------------------------------------------------ RNG
def test_rng_capture_restore_reproduces_draws(tmp_path: Path) -> None:
    seed_everything(123)
    _draws()
    state = capture_rng_state()
    a = _draws()
    # Round trip through a weights_only checkpoint, as training does.
    torch.save({"rng": state}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)["rng"]
    _draws()
    restore_rng_state(loaded)
    assert _draws() == a


def test_rng_restore_on_other_rank_gives_distinct_reproducible_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import maskgen.engine.rng as rng

    seed_everything(9)
    state = capture_rng_state()  # captured on rank 0, as checkpoints are
    assert state["rank"] == 0
    a = _draws()
    monkeypatch.setattr(rng, "global_rank", lambda: 1)
    restore_rng_state(state)
    b = _draws()
    restore_rng_state(state)
    assert _draws() == b and b != a
    monkeypatch.setattr(rng, "global_rank", lambda: 0)
    restore_rng_state(state)
    assert _draws() == a


def test_seed_everything_per_rank_streams() -> None:
    seed_everything(5)
    a = _draws()
    seed_everything(5, rank=0)
    assert _draws() == a
    seed_everything(5, rank=1)
    b = _draws()
    assert b != a
    seed_everything(5, rank=1)
    assert _draws() == b


# ----------------------------------------------------------------------------- model io
def test_model_folder_round_trip(tmp_path: Path) -> None:
    model = _tiny_model()
    shared = nn.Linear(2, 2)
    sd = dict(model.state_dict())
    sd_tied = {"a": shared.weight, "b": shared.weight}  # shared storage must be cloned
    save_model_folder(tmp_path / "m", "amodal-vae", {"latent": 64}, sd, extra={"threshold": 0.45})
    header, loaded = load_model_folder(tmp_path / "m", "amodal-vae")
    assert header["kind"] == "amodal-vae" and header["config"] == {"latent": 64}
    assert header["threshold"] == 0.45
    assert set(loaded) == set(sd)
    for k in sd:
        torch.testing.assert_close(loaded[k], sd[k])
    fresh = _tiny_model()
    load_state_dict_strict(fresh, loaded, tmp_path / "m")
    torch.testing.assert_close(fresh[0].weight, model[0].weight)
    save_model_folder(tmp_path / "t", "x", {}, sd_tied)
    assert set(load_model_folder(tmp_path / "t", "x")[1]) == {"a", "b"}
    # A run folder given as --model resolves to its model/ subfolder.
    run = RunFolder(tmp_path / "run", kind="amodal-vae", config={}, ctx=CTX)
    with pytest.raises(MaskgenError, match="without a finished model"):
        load_model_folder(run.path, "amodal-vae")
    save_model_folder(run.model_dir(), "amodal-vae", {}, sd)
    assert set(load_model_folder(run.path, "amodal-vae")[1]) == set(sd)


def test_model_folder_errors(tmp_path: Path) -> None:
    sd = _tiny_model().state_dict()
    save_model_folder(tmp_path / "m", "segment-gan", {}, sd)
    with pytest.raises(MaskgenError, match=r"m holds a segment-gan model, expected amodal-vae"):
        load_model_folder(tmp_path / "m", "amodal-vae")
    with pytest.raises(MaskgenError, match="model folder not found"):
        load_model_folder(tmp_path / "nope", "amodal-vae")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskgenError, match="no config.json"):
        load_model_folder(tmp_path / "empty", "amodal-vae")
    weights = tmp_path / "m" / "model.safetensors"
    data = weights.read_bytes()
    for bad in (data[: len(data) // 2], b"\xff" * 20, b""):
        weights.write_bytes(bad)
        with pytest.raises(MaskgenError, match="corrupt safetensors file") as e:
            load_model_folder(tmp_path / "m", "segment-gan")
        assert "\n" not in str(e.value)
    weights.unlink()
    with pytest.raises(MaskgenError, match="model.safetensors: file not found"):
        load_model_folder(tmp_path / "m", "segment-gan")


def test_strict_loading_errors() -> None:
    sd = dict(_tiny_model().state_dict())
    missing = {k: v for k, v in sd.items() if k != "2.bias"}
    extra = {**sd, "head.weight": torch.zeros(1)}
    shape = {**sd, "0.weight": torch.zeros(5, 3)}
    cases = [
        (missing, "missing keys 2.bias"),
        (extra, "unexpected keys head.weight"),
        (shape, "wrong shapes 0.weight (file (5, 3), model (4, 3))"),
    ]
    for bad, text in cases:
        with pytest.raises(MaskgenError) as e:
            load_state_dict_strict(_tiny_model(), bad, "M")
        assert str(e.value).startswith("M: weights do not match the model")
        assert text in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------- check_finite
def test_check_finite(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "r", kind="k", config={}, ctx=CTX)
    check_finite(torch.tensor(1.5), 3)
    check_finite(0.0, 3)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 12; .*r/checkpoints"):
        check_finite(torch.tensor([1.0, float("nan")]), 12, run=run)
    with pytest.raises(NonFiniteLossError, match=r"kl became inf at step 4"):
        check_finite(torch.tensor(float("inf")), 4, what="kl")
    assert issubclass(NonFiniteLossError, MaskgenError)


def test_nan_stops_loop_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "r", kind="k", config={}, ctx=CTX)
    w = torch.zeros(1)
    with pytest.raises(NonFiniteLossError, match="step 12"):
        for step in range(20):
            loss = torch.tensor(float("nan") if step == 12 else 1.0)
            check_finite(loss, step)
            w += 1
            if (step + 1) % 5 == 0:
                run.save_checkpoint(step + 1, {"w": w.clone(), "step": step + 1})
    assert [s for s, _ in run.checkpoints()] == [5, 10]
    assert run.load_latest_checkpoint()["w"].item() == 10.0


# ---------------------------------------------------------------------- distributed bits
def test_init_distributed_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (0, 1, 0, True)
    assert ctx.device == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    t = torch.tensor([1.0, 3.0])
    assert all_reduce_mean(t) is t
    model = nn.Linear(2, 2)
    assert wrap_ddp(model, ctx) is model and unwrap(model) is model
    with pytest.raises(MaskgenError, match=r"--device tpu: expected cpu or cuda"):
        init_distributed("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MaskgenError, match=r"--device cuda: CUDA is not available"):
            init_distributed("cuda")


def test_autocast_and_scaler_on_cpu() -> None:
    with autocast_context("cpu"):
        y = nn.Linear(3, 3)(torch.randn(2, 3))
    assert y.dtype == torch.float32
    assert not make_grad_scaler("cpu").is_enabled()


def test_progress_silent_off_main_and_resumable() -> None:
    bar = progress(10, "x", initial=4, ctx=DistContext(rank=1, world_size=2, is_main=False))
    assert bar.disable and list(bar) == [4, 5, 6, 7, 8, 9]
    bar = progress(["a", "b"], "y", ctx=CTX)
    assert list(bar) == ["a", "b"] and bar.total == 2


def test_save_image_grid(tmp_path: Path) -> None:
    imgs = torch.zeros(5, 1, 4, 6)
    imgs[3] = 1.0  # row 1, column 0 with nrow=3
    save_image_grid(tmp_path / "g.png", imgs, nrow=3)
    g = read_image(tmp_path / "g.png", mode="L")
    assert g.shape == (2 * (4 + 2) + 2, 3 * (6 + 2) + 2)
    assert (g[8:12, 2:8] == 255).all() and (g[2:6, 2:8] == 0).all()
    assert g[0, 0] == 128  # separator grey
    rgb = torch.rand(2, 3, 5, 5)
    save_image_grid(tmp_path / "c.png", rgb, nrow=2, padding=0)
    c = read_image(tmp_path / "c.png")
    assert c.shape == (5, 10, 3)
    assert np.abs(c[:, 5:].astype(float) / 255 - rgb[1].permute(1, 2, 0).numpy()).max() < 0.003
    with pytest.raises(ValueError, match="C in 1, 3, 4"):
        save_image_grid(tmp_path / "bad.png", torch.zeros(1, 2, 4, 4), nrow=1)


# ------------------------------------------------------------------ real processes
def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _final_digests(stdout: str) -> dict[int, str]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("final "):
            _, rank, digest = line.split()
            out[int(rank)] = digest
    return out


def test_kill_and_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    """SIGKILL mid-run, damage the newest checkpoint, rerun: same final weights as no kill."""
    base = [sys.executable, str(TOY), "--steps", "40", "--every", "5", "--seed", "7"]
    ref = subprocess.Popen(
        [*base, "--out", str(tmp_path / "ref")], env=_env(), stdout=subprocess.PIPE, text=True
    )
    out = tmp_path / "run"
    killed = subprocess.Popen(
        [*base, "--out", str(out), "--sleep", "0.05"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (out / "checkpoints" / "ckpt-00000015.pt").exists():
        assert killed.poll() is None, "toy run ended before it could be killed"
        assert time.monotonic() < deadline, "toy run made no checkpoint in 60 s"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "DONE").exists()
    ckpts = sorted((out / "checkpoints").glob("ckpt-*.pt"))
    assert 1 <= len(ckpts) <= 2 and int(ckpts[-1].stem.split("-")[1]) >= 15
    # Also truncate the newest checkpoint: the rerun must warn and use the one before.
    if len(ckpts) == 2:
        ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])
        expected_start = int(ckpts[0].stem.split("-")[1])
    else:
        expected_start = int(ckpts[-1].stem.split("-")[1])
    resumed = subprocess.run(
        [*base, "--out", str(out)], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed-from {expected_start}" in resumed.stdout
    if len(ckpts) == 2:
        assert "unreadable checkpoint" in resumed.stderr
    ref_out, _ = ref.communicate(timeout=120)
    assert ref.returncode == 0 and "resumed-from 0" in ref_out
    assert _final_digests(resumed.stdout)[0] == _final_digests(ref_out)[0]
    assert (out / "DONE").exists() and (out / "model" / "model.safetensors").exists()
    a = load_model_folder(out, "toy-mlp")[1]
    b = load_model_folder(tmp_path / "ref", "toy-mlp")[1]
    for k in a:
        assert torch.equal(a[k], b[k])


def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(TOY),
        "--out",
        str(out),
        "--steps",
        "20",
        "--every",
        "5",
        "--seed",
        "3",
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = _final_digests(proc.stdout)
    assert set(digests) == {0, 1}
    # Ranks draw different minibatches; identical weights mean the gradients were averaged.
    assert digests[0] == digests[1]
    assert "rank-writes 1 0 []" in proc.stdout
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "DONE",
        "checkpoints/ckpt-00000015.pt",
        "checkpoints/ckpt-00000020.pt",
        "config.json",
        "metrics.jsonl",
        "model/config.json",
        "model/model.safetensors",
    ]
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]  # one line per tick: rank 1 logged nothing
    state = torch.load(out / "checkpoints" / "ckpt-00000020.pt", weights_only=True)
    assert state["step"] == 20
