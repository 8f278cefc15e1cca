"""Bad input to ``maskgen cluster train|sample|evaluate`` and ``maskgen data cluster``.

Every case must end with exit status 2 and exactly one ``maskgen: error:`` line naming the
problem, leave every earlier result byte-identical (a trained run, a sample folder, a metrics
file, the data folder, someone else's folder) and create nothing at the fresh output path, so
the corrected command runs at once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _cli import check_bad_input, run_cli

TINY = ["--preset", "tiny", "--steps", "2", "--log-every", "1", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Earlier results and odd inputs shared by every case (never changed by them)."""
    from maskgen.cli.main import main

    root = tmp_path_factory.mktemp("bad_cluster")
    data = root / "data"
    argv = ["data", "cluster", "--kind", "synthetic", "--size", "80", "--instance-size", "20"]
    assert main([*argv, "--out", str(data)]) == 0
    run = root / "run"
    argv = ["cluster", "train", "--image", str(data / "image.png"), "--instance-size", "20"]
    assert main([*argv, "--out", str(run), *TINY]) == 0
    samples = root / "samples"
    assert (
        main(["cluster", "sample", "--model", str(run), "--out", str(samples), "--num", "2"]) == 0
    )
    metrics = root / "metrics.json"
    argv = ["cluster", "evaluate", "--model", str(run), "--labels", str(data / "labels.png")]
    assert main([*argv, "--out", str(metrics), "--num", "4"]) == 0
    other = root / "other"
    other.mkdir()
    (other / "notes.txt").write_text("someone else's folder\n")
    afile = root / "afile.txt"
    afile.write_text("not an image\n")
    small_labels = root / "small_labels.png"
    Image.fromarray(
        np.kron(np.arange(6, dtype=np.uint8).reshape(2, 3), np.ones((25, 20), np.uint8))
    ).save(small_labels)
    empty_labels = root / "empty_labels.png"
    Image.fromarray(np.zeros((80, 80), np.uint16)).save(empty_labels)
    small_img = root / "small.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(small_img)
    ids8 = root / "ids8.png"  # an 8-bit label map: consecutive ids 0..5 in flat blocks
    Image.fromarray(
        np.kron(np.arange(6, dtype=np.uint8).reshape(2, 3), np.ones((40, 27), np.uint8))
    ).save(ids8)
    corrupt = root / "corrupt_model"
    shutil.copytree(run / "model", corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    wrong_kind = root / "wrong_kind"
    shutil.copytree(run / "model", wrong_kind)
    header = json.loads((wrong_kind / "config.json").read_text())
    (wrong_kind / "config.json").write_text(json.dumps({**header, "kind": "amodal-vae"}))
    return {
        "data": data,
        "img": data / "image.png",
        "labels": data / "labels.png",
        "run": run,
        "samples": samples,
        "metrics": metrics,
        "other": other,
        "file": afile,
        "small_labels": small_labels,
        "empty_labels": empty_labels,
        "small_img": small_img,
        "ids8": ids8,
        "corrupt": corrupt,
        "wrong_kind": wrong_kind,
    }


def _train(*extra: str, image: str = "{img}", out: str = "{new}", size: str = "20") -> list[str]:
    head = ["cluster", "train", "--image", image, "--out", out]
    return [*head, *(["--instance-size", size] if size else []), *TINY, *extra]


def _sample(*extra: str, model: str = "{run}", out: str = "{new}") -> list[str]:
    return ["cluster", "sample", "--model", model, "--out", out, *extra]


def _evaluate(*extra: str, labels: str = "{labels}", out: str = "{new}") -> list[str]:
    head = ["cluster", "evaluate", "--model", "{run}", "--labels", labels, "--out", out]
    return [*head, "--num", "4", *extra]


def _data(*extra: str, out: str = "{new}") -> list[str]:
    return ["data", "cluster", "--kind", "synthetic", "--out", out, *extra]


CASES = {
    # ------------------------------------------------------------------ cluster train: flags
    "train-device-unknown": (_train("--device", "tpu"), "--device tpu"),
    "train-device-cuda-index": (_train("--device", "cuda:7"), "--device cuda:7"),
    "train-seed-negative": (_train("--seed", "-1"), "--seed -1"),
    "train-steps-zero": (_train("--steps", "0"), "--steps 0"),
    "train-steps-negative": (_train("--steps", "-5"), "--steps -5"),
    "train-steps-not-a-number": (_train("--steps", "many"), "--steps"),
    "train-batch-zero": (_train("--batch-size", "0"), "--batch-size 0"),
    "train-layers-zero": (_train("--layers", "0"), "--layers 0"),
    "train-pad-negative": (_train("--pad", "-1"), "--pad -1"),
    "train-pad-over-patch": (_train("--pad", "16"), "--pad 16"),
    "train-patch-not-multiple-of-8": (_train("--patch-size", "20"), "--patch-size 20"),
    "train-patch-too-small": (_train("--patch-size", "8"), "--patch-size 8"),
    "train-area-target-above-1": (_train("--area-target", "1.5"), "--area-target 1.5"),
    "train-area-target-zero": (_train("--area-target", "0"), "--area-target 0"),
    "train-area-target-nan": (_train("--area-target", "nan"), "finite"),
    "train-ema-above-1": (_train("--ema-decay", "1.5"), "--ema-decay 1.5"),
    "train-ema-exactly-1": (_train("--ema-decay", "1"), "--ema-decay 1"),
    "train-lr-zero": (_train("--lr-g", "0"), "--lr-g 0"),
    "train-lr-inf": (_train("--lr-d", "inf"), "finite"),
    "train-negative-weight": (_train("--area-weight", "-1"), "--area-weight -1"),
    "train-r1-every-zero": (_train("--r1-every", "0"), "--r1-every 0"),
    "train-betas-one-value": (_train("--betas", "0.5"), "--betas"),
    "train-g-channels-two": (_train("--g-channels", "8,8"), "--g-channels"),
    "train-disk-radius-zero": (_train("--disk-radius", "0"), "--disk-radius 0"),
    "train-rgb-lowres-zero": (_train("--rgb-lowres", "0"), "--rgb-lowres 0"),
    "train-paint-weight-negative": (_train("--paint-weight", "-1"), "--paint-weight -1"),
    "train-paint-sigma-zero": (_train("--paint-sigma", "0"), "--paint-sigma 0"),
    "train-paint-against-unknown": (_train("--paint-against", "fg"), "--paint-against"),
    "train-border-weight-negative": (_train("--border-weight", "-1"), "--border-weight -1"),
    "train-border-px-too-wide": (_train("--border-px", "100"), "--border-px 100"),
    "train-recolour-above-one": (_train("--recolour", "1.5"), "--recolour 1.5"),
    "train-recolour-not-finite": (_train("--recolour", "nan"), "--recolour nan"),
    "train-info-input-unknown": (_train("--info-input", "rgb"), "--info-input"),
    "train-ground-jitter-above-one": (_train("--ground-jitter", "1.5"), "--ground-jitter 1.5"),
    "train-ground-jitter-not-finite": (_train("--ground-jitter", "nan"), "--ground-jitter nan"),
    "train-colour-floor-above-one": (_train("--colour-floor", "2"), "--colour-floor 2"),
    "train-colour-floor-negative": (_train("--colour-floor", "-0.1"), "--colour-floor -0.1"),
    "train-density-unknown": (_train("--density", "sparse"), "--density"),
    "train-rgb-lowres-not-dividing": (_train("--rgb-lowres", "3"), "--rgb-lowres 3"),
    "train-background-unknown": (_train("--background", "grey"), "--background"),
    "train-bg-fill-unknown": (_train("--bg-fill", "grey"), "--bg-fill"),
    "train-loss-unknown": (_train("--adv-loss", "wgan"), "--adv-loss"),
    "train-preset-unknown": (_train("--preset", "huge"), "--preset"),
    "train-absurd-batch": (_train("--batch-size", "4096", "--layers", "256"), "memory"),
    "train-absurd-generator": (
        _train("--g-channels", "4096,8,8", "--z-dim", "1024", "--patch-size", "256"),
        "generator weights",
    ),
    "train-threads-zero": (_train("--threads", "0"), "--threads 0"),
    "train-log-every-zero": (_train("--log-every", "0"), "--log-every 0"),
    "train-checkpoint-every-negative": (_train("--checkpoint-every", "-1"), "--checkpoint-every"),
    "train-max-minutes-zero": (_train("--max-minutes", "0"), "--max-minutes 0"),
    "train-instance-size-zero": (_train(size="0"), "--instance-size 0"),
    "train-instance-size-over-image": (_train(size="100"), "larger than the image"),
    "train-image-smaller-than-window": (_train(image="{small_img}", size="16"), "patch window"),
    "train-instance-size-missing": (_train(size=""), "--instance-size"),
    # ------------------------------------------------------------------ cluster train: files
    "train-image-missing": (_train(image="{root}/nope.png"), "not found"),
    "train-image-is-folder": (_train(image="{other}"), "is a folder"),
    "train-image-not-an-image": (_train(image="{file}"), "cannot read image"),
    "train-image-is-label-map": (_train(image="{labels}"), "label map"),
    "train-image-is-8bit-label-map": (_train(image="{ids8}"), "label map"),
    "train-builtin-unknown": (_train(image="builtin:nope", size=""), "nope"),
    "train-out-is-file": (_train(out="{file}"), "not a folder"),
    "train-out-foreign-folder": (_train(out="{other}"), "not a maskgen run"),
    "train-out-run-other-config": (_train("--layers", "4", out="{run}"), "different config"),
    # ------------------------------------------------------------------ cluster sample
    "sample-num-zero": (_sample("--num", "0"), "--num"),
    "sample-num-absurd": (_sample("--num", "100000000"), "--num"),
    "sample-seed-negative": (_sample("--seed", "-1"), "--seed"),
    "sample-model-missing": (_sample(model="{root}/nomodel"), "not found"),
    "sample-model-is-file": (_sample(model="{file}"), "not a model folder"),
    "sample-model-no-config": (_sample(model="{other}"), "no config.json"),
    "sample-model-other-kind": (_sample(model="{wrong_kind}"), "expected cluster"),
    "sample-model-corrupt-weights": (_sample(model="{corrupt}"), "corrupt safetensors"),
    "sample-out-is-file": (_sample(out="{file}"), "not a folder"),
    "sample-out-is-file-force": (_sample("--force", out="{file}"), "not a folder"),
    "sample-out-earlier-result": (_sample(out="{samples}"), "--force"),
    "sample-out-foreign-folder-force": (_sample("--force", out="{other}"), "not an earlier"),
    "sample-image-is-label-map": (_sample("--image", "{labels}"), "label map"),
    # ------------------------------------------------------------------ cluster evaluate
    "evaluate-labels-is-photo": (_evaluate(labels="{img}"), "looks like a photo"),
    "evaluate-labels-is-folder": (_evaluate(labels="{other}"), "is a folder"),
    "evaluate-labels-missing": (_evaluate(labels="{root}/none.png"), "not found"),
    "evaluate-labels-wrong-size": (_evaluate(labels="{small_labels}"), "label map is 60x50"),
    "evaluate-labels-empty": (_evaluate(labels="{empty_labels}"), "no instances"),
    "evaluate-image-is-label-map": (_evaluate("--image", "{labels}"), "label map"),
    "evaluate-image-other-size": (_evaluate("--image", "{small_img}"), "20x20"),
    "evaluate-out-earlier-result": (_evaluate(out="{metrics}"), "--force"),
    "evaluate-out-is-folder-force": (_evaluate("--force", out="{other}"), "is a folder"),
    "evaluate-num-one": (_evaluate("--num", "1"), "--num"),
    "evaluate-seed-negative": (_evaluate("--seed", "-3"), "--seed"),
    "evaluate-foreground-unknown": (_evaluate("--foreground", "grey"), "--foreground"),
    # ------------------------------------------------------------------ data cluster
    "data-size-zero": (_data("--size", "0"), "--size 0"),
    "data-size-absurd": (_data("--size", "100000"), "--size"),
    "data-size-memory": (_data("--size", "4096", "--instance-size", "8"), "GiB"),
    "data-instance-size-zero": (_data("--instance-size", "0"), "--instance-size 0"),
    "data-instance-over-size": (_data("--size", "64", "--instance-size", "100"), "larger"),
    "data-spacing-negative": (_data("--spacing", "-1"), "--spacing -1"),
    "data-spacing-nan": (_data("--spacing", "nan"), "--spacing nan"),
    "data-rim-above-1": (_data("--rim", "2"), "--rim 2"),
    "data-tint-negative": (_data("--tint-jitter", "-0.1"), "--tint-jitter"),
    "data-shape-unknown": (_data("--shape", "unicorn"), "--shape unicorn"),
    "data-seed-negative": (_data("--seed", "-1"), "--seed -1"),
    "data-size-not-a-number": (_data("--size", "big"), "--size"),
    "data-coins-with-synthetic-flag": (
        ["data", "cluster", "--kind", "coins", "--rim", "1", "--out", "{new}"],
        "--rim",
    ),
    "data-out-is-file-force": (_data("--force", out="{file}"), "not a folder"),
    "data-out-earlier-result": (_data(out="{data}"), "--force"),
    "data-out-foreign-folder-force": (_data("--force", out="{other}"), "not an earlier"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, world: dict[str, Path], tmp_path: Path, capsys) -> None:
    if name == "train-device-cuda-index" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    argv, needle = CASES[name]
    paths = {**{k: str(v) for k, v in world.items()}, "root": str(world["data"].parent)}
    new = tmp_path / "new"
    paths["new"] = str(new)
    argv = [a.format(**paths) for a in argv]
    protect = [world[k] for k in ("data", "run", "samples", "metrics", "other", "file")]
    check_bad_input(argv, capsys, needle, protect=protect)
    assert not new.exists(), "a failed start left something at the output path"


def test_cuda_on_a_cpu_build_is_one_line(world, tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    argv = [a.format(img=world["img"], new=tmp_path / "new") for a in _train("--device", "cuda")]
    check_bad_input(argv, capsys, "CUDA is not available", protect=[world["run"]])
    assert not (tmp_path / "new").exists()


def test_corrected_command_runs_after_a_failed_start(world, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = [a.format(img=world["img"], new=out) for a in _train()]
    check_bad_input([*argv, "--steps", "0"], capsys, "--steps 0")
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert (out / "DONE").is_file()


def test_data_cluster_rerun_after_a_crash_and_force(world, tmp_path, capsys, monkeypatch) -> None:
    """A crash while writing leaves nothing in --out; --force replaces an earlier result."""
    from maskgen.cli import data_cluster

    out = tmp_path / "d"
    argv = ["data", "cluster", "--kind", "synthetic", "--size", "48", "--out", str(out)]
    argv += ["--instance-size", "12"]

    def crash(path, labels):
        raise RuntimeError("disk full")

    monkeypatch.setattr(data_cluster, "write_label_png", crash)
    with pytest.raises(RuntimeError):
        run_cli(argv, capsys)
    assert not out.exists() or not any(out.iterdir())
    assert not list(tmp_path.glob(".d.*"))  # no staging folder left either
    monkeypatch.undo()
    assert run_cli(argv, capsys)[0] == 0
    first = (out / "image.png").read_bytes()
    assert run_cli([*argv, "--seed", "3"], capsys)[0] == 2  # no silent overwrite
    assert run_cli([*argv, "--seed", "3", "--force"], capsys)[0] == 0
    assert (out / "image.png").read_bytes() != first
