"""The one training loop and the config machinery (maskgen.engine.loop / .config)."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest
import torch

from maskgen.engine import (
    RunFolder,
    RunOptions,
    add_config_arguments,
    config_from_args,
    make_config,
    param,
    resume_key,
    training_loop,
)
from maskgen.errors import MaskgenError, NonFiniteLossError


@dataclasses.dataclass
class ToyConfig:
    PRESETS = {"cpu": {}, "big": {"width": 8}}  # noqa: RUF012
    preset: str = param("cpu", "preset name", flag=False)
    width: int = param(4, "hidden width", low=1)
    lr: float = param(0.1, "learning rate", low=0, low_open=True)
    keep: float = param(0.5, "a probability", low=0, high=1)
    mode: str = param("a", "mode", choices=("a", "b"))
    data: str = param("", "input file", role="path")
    sizes: tuple[int, ...] = param((1, 2), "sizes", low=1)
    flipping: bool = param(False, "flip")


class ToyTrainer:
    def __init__(self, width: int = 4, nan_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Linear(width, 1)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.gen = torch.Generator().manual_seed(1)
        self.history: dict = {"calls": 0}
        self.resumable = {"net": self.net, "opt": self.opt, "gen": self.gen, "hist": self.history}
        self.nan_at = nan_at
        self.logged: list[int] = []

    def step(self, step: int) -> dict:
        x = torch.randn(8, self.net.in_features, generator=self.gen)
        loss = (self.net(x) - 1).pow(2).mean()
        if step == self.nan_at:
            loss = loss * float("nan")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.history["calls"] += 1
        return {"loss": loss, "const": 1.0}

    def on_log(self, step: int, metrics: dict) -> None:
        self.logged.append(step)


def _opts(**kw) -> RunOptions:
    return RunOptions(quiet=True, log_every=2, checkpoint_every=3, **kw)


def test_loop_runs_logs_and_checkpoints(tmp_path) -> None:
    run = RunFolder(tmp_path / "run", kind="toy", config={})
    t = ToyTrainer()
    res = training_loop(t, run, total_steps=7, opts=_opts())
    assert res.finished and res.done == 7 and res.start == 0
    assert t.logged == [2, 4, 6, 7]
    steps = [m["step"] for m in run.read_metrics()]
    assert steps == [2, 4, 6, 7]
    assert [s for s, _ in run.checkpoints()] == [3, 6, 7]


def test_resume_equals_uninterrupted(tmp_path) -> None:
    a = ToyTrainer()
    training_loop(a, RunFolder(tmp_path / "a", "toy", {}), total_steps=9, opts=_opts())
    run_b = RunFolder(tmp_path / "b", "toy", {})
    b1 = ToyTrainer()
    res = training_loop(b1, run_b, total_steps=9, opts=_opts(stop_after=4))
    assert not res.finished and res.done == 4
    b2 = ToyTrainer()  # a fresh process: everything comes from the checkpoint
    res2 = training_loop(b2, run_b, total_steps=9, opts=_opts())
    assert res2.start == 4 and res2.finished
    assert torch.equal(a.net.weight, b2.net.weight)
    assert b2.history["calls"] == 9


def test_half_written_checkpoint_falls_back(tmp_path, capsys) -> None:
    run = RunFolder(tmp_path / "r", "toy", {})
    training_loop(ToyTrainer(), run, total_steps=9, opts=_opts(stop_after=7))
    newest = run.checkpoints()[-1][1]
    newest.write_bytes(newest.read_bytes()[:100])  # a kill during a (non-atomic) write
    t = ToyTrainer()
    res = training_loop(t, run, total_steps=9, opts=_opts())
    assert res.start == 6 and res.finished
    assert "unreadable checkpoint" in capsys.readouterr().err


def test_nan_guard_stops_without_checkpoint(tmp_path) -> None:
    run = RunFolder(tmp_path / "r", "toy", {})
    with pytest.raises(NonFiniteLossError, match="nan at step 4"):
        training_loop(ToyTrainer(nan_at=4), run, total_steps=9, opts=_opts())
    assert [s for s, _ in run.checkpoints()] == [3]


def test_time_budget_pauses(tmp_path) -> None:
    run = RunFolder(tmp_path / "r", "toy", {})
    res = training_loop(ToyTrainer(), run, total_steps=50, opts=_opts(max_minutes=1e-9))
    assert not res.finished and res.done == 1


def test_make_config_presets_and_bounds() -> None:
    cfg = make_config(ToyConfig, "big", lr=0.5)
    assert cfg.width == 8 and cfg.lr == 0.5 and cfg.preset == "big"
    for bad, match in [
        ({"lr": 0.0}, "--lr 0.0: must be > 0"),
        ({"lr": math.nan}, "--lr nan: must be a finite number"),
        ({"keep": 1.5}, "--keep 1.5: must be <= 1"),
        ({"width": 0}, "--width 0: must be >= 1"),
        ({"mode": "c"}, "--mode c: unknown"),
        ({"sizes": (1, 0)}, "--sizes 0: must be >= 1"),
        ({"nope": 1}, "--nope: not a setting"),
    ]:
        with pytest.raises(MaskgenError, match=match):
            make_config(ToyConfig, "cpu", **bad)
    with pytest.raises(MaskgenError, match="--preset huge: unknown"):
        make_config(ToyConfig, "huge")


def test_generated_flags_and_resume_key(tmp_path) -> None:
    p = argparse.ArgumentParser()
    add_config_arguments(p, ToyConfig)
    add_config_arguments(p, RunOptions)
    args = p.parse_args(["--preset", "big", "--sizes", "3,4", "--flipping", "--threads", "2"])
    cfg = config_from_args(ToyConfig, args)
    assert cfg.sizes == (3, 4) and cfg.flipping is True and cfg.width == 8
    assert config_from_args(RunOptions, args).threads == 2
    (tmp_path / "d.json").write_text("{}")
    a = make_config(ToyConfig, data=str(tmp_path / "d.json"))
    b = make_config(ToyConfig, data=str(tmp_path / "x" / ".." / "d.json"))
    assert resume_key(a) == resume_key(b)
    assert "threads" not in resume_key(config_from_args(RunOptions, args))


def test_failed_start_does_not_block_corrected_command(tmp_path) -> None:
    """A run folder whose first start trained nothing takes the corrected config."""
    RunFolder(tmp_path / "r", "toy", {"lr": 1.0})  # e.g. a NaN at step 0: no checkpoint
    run = RunFolder(tmp_path / "r", "toy", {"lr": 0.1})
    assert run.config == {"lr": 0.1}
    training_loop(ToyTrainer(), run, total_steps=3, opts=_opts())
    with pytest.raises(MaskgenError, match="different config"):
        RunFolder(tmp_path / "r", "toy", {"lr": 1.0})
