"""One way to fail, for ``maskgen amodal train|complete|evaluate|analyze`` and ``maskgen demo``.

Every case asserts (``tests/_cli.check_bad_input``): exit status 2, exactly one stderr line
``maskgen: error: ...`` (no traceback), and every earlier output byte-identical afterwards.
The earlier outputs are made once per module by successful runs of the same commands on tiny
built-in scenes with an untrained tiny model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _amodal_tiny import save_tiny_model, tiny_scenes
from _cli import check_bad_input, run_cli
from maskgen.core.io import write_image

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs and earlier outputs shared by every case (built once)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bad_amodal")
    scenes = tiny_scenes(root / "scenes", num_test=3, seed=5)
    p = {
        "root": root,
        "model": save_tiny_model(root / "model", seed=1, threshold=0.5),
        "vis": scenes / "annotations" / "test_coco.json",
        "gt": scenes / "annotations" / "test_kins2020.json",
        "images": scenes / "images" / "test",
        "photo": root / "photo.png",
        "file": root / "plain.txt",
        "folder": root / "some_folder",
        "results": root / "results.json",
        "overlays": root / "overlays",
        "eval": root / "eval",
        "analysis": root / "analysis",
        "demo": root / "demo",
        "run": root / "run",
    }
    rng = np.random.default_rng(0)
    write_image(p["photo"], rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    p["file"].write_text("not a folder\n")
    p["folder"].mkdir()
    (p["folder"] / "keep.txt").write_text("someone's file\n")
    bad = root / "corrupt_model"
    save_tiny_model(bad, seed=1, threshold=0.5)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    p["corrupt_model"] = bad
    model, vis, images = str(p["model"]), str(p["vis"]), str(p["images"])
    ok = [
        ["amodal", "complete", "--model", model, "--masks", vis, "--images", images,
         "--out", p["results"], "--overlays", p["overlays"], "--samples", "1"],
        ["amodal", "evaluate", "--gt", p["gt"], "--pred", p["results"], "--out", p["eval"]],
        ["amodal", "analyze", "--model", model, "--gt", p["gt"], "--out", p["analysis"],
         "--samples", "2"],
        ["demo", "--model", model, "--out", p["demo"], "--num-images", "2", "--image-size", "64",
         "--samples", "1", "--overlays", "1"],
    ]  # fmt: skip
    for argv in ok:
        rc, _, err = run_cli([str(a) for a in argv], _NoCapture())
        assert rc == 0, err
    _tiny_train(p)
    return p


class _NoCapture:
    """capsys stand-in for the module fixture (pytest's capsys is function-scoped)."""

    def readouterr(self) -> tuple[str, str]:
        return "", ""


TRAIN_TINY = [
    "--stage1-steps", "4", "--stage2-steps", "4", "--stage3-steps", "4", "--batch-size", "8",
    "--stage1-pool", "50", "--stage2-pool", "50", "--val-samples", "20", "--widths", "4,8",
    "--fc-dim", "16", "--threads", "1", "--quiet",
]  # fmt: skip


def _tiny_train(p: dict[str, Path]) -> None:
    """A tiny training run paused after 2 steps (an earlier run to protect)."""
    from maskgen.data.coco import write_coco
    from maskgen.data.loader import load_dataset

    data = p["root"] / "train.json"
    write_coco(load_dataset(p["vis"]), data)
    p["train"] = data
    argv = ["amodal", "train", "--data", data, "--out", p["run"], *TRAIN_TINY, "--stop-after", "2"]
    rc, _, err = run_cli([str(a) for a in argv], _NoCapture())
    assert rc == 0, err
    empty = p["root"] / "empty.json"
    ds = load_dataset(p["vis"])
    for im in ds.images:
        im.instances = im.instances[:0]
    write_coco(ds, empty)
    p["empty"] = empty


# (id, argv, needle, protected names) ------------------------------------------------------------
T = ["amodal", "train", "--data", "@train", *TRAIN_TINY]
TRAIN_CASES = [
    ("device-cuda", [*T, "--out", "@root/t", "--device", "cuda"], "--device cuda"),
    ("device-cuda1", [*T, "--out", "@root/t", "--device", "cuda:1"], "--device cuda:1"),
    ("device-tpu", [*T, "--out", "@root/t", "--device", "tpu"], "--device tpu"),
    ("device-cuda-text", [*T, "--out", "@root/t", "--device", "cuda:x"], "--device cuda:x"),
    ("seed-negative", [*T, "--out", "@root/t", "--seed", "-1"], "--seed"),
    ("seed-text", [*T, "--out", "@root/t", "--seed", "abc"], "--seed"),
    ("batch-zero", [*T, "--out", "@root/t", "--batch-size", "0"], "--batch-size"),
    ("batch-negative", [*T, "--out", "@root/t", "--batch-size", "-5"], "--batch-size"),
    ("batch-huge", [*T, "--out", "@root/t", "--batch-size", "100000000"], "--batch-size"),
    ("stage1-steps-zero", [*T, "--out", "@root/t", "--stage1-steps", "0"], "--stage1-steps"),
    ("stage2-steps-neg", [*T, "--out", "@root/t", "--stage2-steps", "-1"], "--stage2-steps"),
    ("stage3-steps-zero", [*T, "--out", "@root/t", "--stage3-steps", "0"], "--stage3-steps"),
    ("lr-zero", [*T, "--out", "@root/t", "--stage1-lr", "0"], "--stage1-lr"),
    ("lr-nan", [*T, "--out", "@root/t", "--stage2-lr", "nan"], "--stage2-lr"),
    ("lr-inf", [*T, "--out", "@root/t", "--stage3-lr", "inf"], "--stage3-lr"),
    ("quantile-zero", [*T, "--out", "@root/t", "--box-quantile", "0"], "--box-quantile"),
    ("quantile-big", [*T, "--out", "@root/t", "--box-quantile", "1.5"], "--box-quantile"),
    ("quantile-nan", [*T, "--out", "@root/t", "--box-quantile", "nan"], "--box-quantile"),
    ("val-fraction-one", [*T, "--out", "@root/t", "--val-fraction", "1"], "--val-fraction"),
    ("val-fraction-neg", [*T, "--out", "@root/t", "--val-fraction", "-0.1"], "--val-fraction"),
    ("val-samples-zero", [*T, "--out", "@root/t", "--val-samples", "0"], "--val-samples"),
    ("pool-zero", [*T, "--out", "@root/t", "--stage1-pool", "0"], "--stage1-pool"),
    ("pool-huge", [*T, "--out", "@root/t", "--stage2-pool", "100000000000"], "--stage2-pool"),
    ("kl-alpha-big", [*T, "--out", "@root/t", "--kl-alpha", "1.5"], "--kl-alpha"),
    ("kl-scale-zero", [*T, "--out", "@root/t", "--kl-schedule-scale", "0"], "--kl-schedule"),
    ("kl-final-neg", [*T, "--out", "@root/t", "--kl-final", "-1"], "--kl-final"),
    ("unoccluded-big", [*T, "--out", "@root/t", "--unoccluded-fraction", "2"], "--unoccluded"),
    ("threads-zero", [*T, "--out", "@root/t", "--threads", "0"], "--threads"),
    ("log-every-zero", [*T, "--out", "@root/t", "--log-every", "0"], "--log-every"),
    ("ckpt-every-neg", [*T, "--out", "@root/t", "--checkpoint-every", "-1"], "--checkpoint"),
    ("max-minutes-zero", [*T, "--out", "@root/t", "--max-minutes", "0"], "--max-minutes"),
    ("stop-after-zero", [*T, "--out", "@root/t", "--stop-after", "0"], "--stop-after"),
    ("widths-text", [*T, "--out", "@root/t", "--widths", "a,b"], "--widths"),
    ("widths-one", [*T, "--out", "@root/t", "--widths", "8"], "--widths"),
    ("widths-zero", [*T, "--out", "@root/t", "--widths", "0,8"], "--widths"),
    ("fc-dim-zero", [*T, "--out", "@root/t", "--fc-dim", "0"], "--fc-dim"),
    ("fc-dim-huge", [*T, "--out", "@root/t", "--fc-dim", "10000000"], "--fc-dim"),
    ("widths-huge", [*T, "--out", "@root/t", "--widths", "8,100000"], "--widths"),
    ("val-samples-huge", [*T, "--out", "@root/t", "--val-samples", "100000000"], "--val-samples"),
    ("preset-unknown", [*T, "--out", "@root/t", "--preset", "huge"], "--preset"),
    ("data-missing", ["amodal", "train", "--data", "@root/nope.json", "--out", "@root/t"], "nope"),
    ("data-folder", ["amodal", "train", "--data", "@folder", "--out", "@root/t"], "folder"),
    (
        "data-photo",
        ["amodal", "train", "--data", "@photo", "--out", "@root/t", *TRAIN_TINY],
        "photo",
    ),
    ("val-folder", [*T, "--val", "@folder", "--out", "@root/t"], "some_folder"),
    ("out-file", [*T, "--out", "@file"], "plain.txt"),
    ("out-foreign-folder", [*T, "--out", "@folder"], "some_folder"),
    ("out-model-folder", [*T, "--out", "@model"], "not a run"),
    ("no-complete", ["amodal", "train", "--data", "@empty", "--out", "@root/t", *TRAIN_TINY], ""),
    ("resume-other-config", [*T, "--out", "@run", "--seed", "3"], "different config"),
    ("no-data-flag", ["amodal", "train", "--out", "@root/t"], "--data"),
]

M = ["--model", "@model"]
C = ["amodal", "complete", *M, "--masks", "@vis", "--images", "@images"]
COMPLETE_CASES = [
    ("device-cuda", [*C, "--out", "@root/c.json", "--device", "cuda"], "--device cuda"),
    ("device-tpu", [*C, "--out", "@root/c.json", "--device", "tpu"], "--device tpu"),
    ("device-cuda-text", [*C, "--out", "@root/c.json", "--device", "cuda:x"], "--device cuda:x"),
    ("seed-negative", [*C, "--out", "@root/c.json", "--seed", "-1"], "--seed"),
    ("samples-negative", [*C, "--out", "@root/c.json", "--samples", "-1"], "--samples"),
    ("samples-huge", [*C, "--out", "@root/c.json", "--samples", "1000000000"], "--samples"),
    ("batch-zero", [*C, "--out", "@root/c.json", "--batch-size", "0"], "--batch-size"),
    ("batch-huge", [*C, "--out", "@root/c.json", "--batch-size", "1000000000"], "--batch-size"),
    (
        "model-missing",
        [*C[:2], "--model", "@root/nomodel", *C[4:], "--out", "@root/c.json"],
        "nomodel",
    ),
    ("model-file", [*C[:2], "--model", "@file", *C[4:], "--out", "@root/c.json"], "plain.txt"),
    (
        "model-corrupt",
        [*C[:2], "--model", "@corrupt_model", *C[4:], "--out", "@root/c.json"],
        "corrupt",
    ),
    ("model-is-report", [*C[:2], "--model", "@eval", *C[4:], "--out", "@root/c.json"], "eval"),
    (
        "masks-missing",
        [*C[:4], "--masks", "@root/none.json", "--images", "@images", "--out", "@root/c.json"],
        "none.json",
    ),
    (
        "masks-folder",
        [*C[:4], "--masks", "@folder", "--images", "@images", "--out", "@root/c.json"],
        "some_folder",
    ),
    (
        "masks-photo",
        [*C[:4], "--masks", "@photo", "--images", "@images", "--out", "@root/c.json"],
        "photo.png",
    ),
    (
        "masks-is-results",
        [*C[:4], "--masks", "@results", "--images", "@images", "--out", "@root/c.json"],
        "results.json",
    ),
    ("images-missing", [*C[:6], "--images", "@root/noimages", "--out", "@root/c.json"], "noimages"),
    ("images-file", [*C[:6], "--images", "@photo", "--out", "@root/c.json"], "photo.png"),
    ("out-exists", [*C, "--out", "@results"], "--force"),
    ("out-folder-force", [*C, "--out", "@folder", "--force"], "some_folder"),
    ("overlays-file", [*C, "--out", "@root/c.json", "--overlays", "@file"], "plain.txt"),
    ("overlays-not-empty", [*C, "--out", "@root/c.json", "--overlays", "@overlays"], "--force"),
    ("boxes-missing", [*C, "--out", "@root/c.json", "--amodal-boxes", "@root/b.json"], "b.json"),
    ("boxes-folder", [*C, "--out", "@root/c.json", "--amodal-boxes", "@folder"], "some_folder"),
    ("visible-source", [*C, "--out", "@root/c.json", "--visible-source", "x"], "visible-source"),
    (
        "boxes-both",
        [*C, "--out", "@root/c.json", "--amodal-boxes", "@gt", "--gt-amodal-boxes"],
        "not allowed",
    ),
]

E = ["amodal", "evaluate"]
EVAL_CASES = [
    ("gt-missing", [*E, "--gt", "@root/g.json", "--method", "raw", "--out", "@root/e"], "g.json"),
    ("gt-folder", [*E, "--gt", "@folder", "--method", "raw", "--out", "@root/e"], "some_folder"),
    ("gt-photo", [*E, "--gt", "@photo", "--method", "raw", "--out", "@root/e"], "photo.png"),
    (
        "gt-is-results",
        [*E, "--gt", "@results", "--method", "raw", "--out", "@root/e"],
        "results.json",
    ),
    ("gt-visible-only", [*E, "--gt", "@vis", "--method", "raw", "--out", "@root/e"], "amodal"),
    ("pred-is-gt", [*E, "--gt", "@gt", "--pred", "@gt", "--out", "@root/e"], "test_kins2020"),
    ("pred-is-visible", [*E, "--gt", "@gt", "--pred", "@vis", "--out", "@root/e"], "test_coco"),
    ("pred-folder", [*E, "--gt", "@gt", "--pred", "@folder", "--out", "@root/e"], "some_folder"),
    ("pred-missing", [*E, "--gt", "@gt", "--pred", "@root/p.json", "--out", "@root/e"], "p.json"),
    ("pred-photo", [*E, "--gt", "@gt", "--pred", "@photo", "--out", "@root/e"], "photo.png"),
    ("out-exists", [*E, "--gt", "@gt", "--pred", "@results", "--out", "@eval"], "--force"),
    (
        "out-file-force",
        [*E, "--gt", "@gt", "--method", "raw", "--out", "@file", "--force"],
        "plain.txt",
    ),
    (
        "out-foreign-force",
        [*E, "--gt", "@gt", "--method", "raw", "--out", "@folder", "--force"],
        "some_folder",
    ),
    (
        "layout-unknown",
        [*E, "--gt", "@gt", "--method", "raw", "--out", "@root/e", "--layout", "x"],
        "--layout",
    ),
    ("method-unknown", [*E, "--gt", "@gt", "--method", "magic", "--out", "@root/e"], "--method"),
    ("no-source", [*E, "--gt", "@gt", "--out", "@root/e"], "--pred"),
]

A = ["amodal", "analyze", *M, "--gt", "@gt"]
ANALYZE_CASES = [
    ("samples-negative", [*A, "--out", "@root/a", "--samples", "-1"], "--samples"),
    ("samples-huge", [*A, "--out", "@root/a", "--samples", "1000000"], "--samples"),
    ("seed-negative", [*A, "--out", "@root/a", "--seed", "-2"], "--seed"),
    (
        "corruption-seed-neg",
        [*A, "--out", "@root/a", "--corruption-seed", "-1"],
        "--corruption-seed",
    ),
    ("batch-zero", [*A, "--out", "@root/a", "--batch-size", "0"], "--batch-size"),
    ("device-cuda", [*A, "--out", "@root/a", "--device", "cuda"], "--device cuda"),
    ("device-tpu", [*A, "--out", "@root/a", "--device", "tpu"], "--device tpu"),
    ("out-exists", [*A, "--out", "@analysis"], "--force"),
    ("out-file-force", [*A, "--out", "@file", "--force"], "plain.txt"),
    ("out-foreign-force", [*A, "--out", "@folder", "--force"], "some_folder"),
    ("gt-missing", [*A[:4], "--gt", "@root/g.json", "--out", "@root/a"], "g.json"),
    ("gt-photo", [*A[:4], "--gt", "@photo", "--out", "@root/a"], "photo.png"),
    ("gt-visible-only", [*A[:4], "--gt", "@vis", "--out", "@root/a"], "amodal"),
    ("gt-folder", [*A[:4], "--gt", "@folder", "--out", "@root/a"], "some_folder"),
    ("gt-is-results", [*A[:4], "--gt", "@results", "--out", "@root/a"], "results.json"),
    (
        "model-missing",
        [*A[:2], "--model", "@root/nomodel", "--gt", "@gt", "--out", "@root/a"],
        "nomodel",
    ),
]

D = ["demo", *M, "--image-size", "64"]
DEMO_CASES = [
    ("num-images-zero", [*D, "--out", "@root/d", "--num-images", "0"], "--num-images"),
    ("num-images-huge", [*D, "--out", "@root/d", "--num-images", "1000000000"], "--num-images"),
    ("image-size-zero", [*D, "--out", "@root/d", "--image-size", "0"], "--image-size"),
    ("image-size-huge", [*D, "--out", "@root/d", "--image-size", "100000"], "--image-size"),
    ("samples-negative", [*D, "--out", "@root/d", "--samples", "-1"], "--samples"),
    ("samples-huge", [*D, "--out", "@root/d", "--samples", "1000000"], "--samples"),
    ("overlays-negative", [*D, "--out", "@root/d", "--overlays", "-1"], "--overlays"),
    ("seed-negative", [*D, "--out", "@root/d", "--seed", "-1"], "--seed"),
    ("device-cuda", [*D, "--out", "@root/d", "--device", "cuda"], "--device cuda"),
    ("device-tpu", [*D, "--out", "@root/d", "--device", "tpu"], "--device tpu"),
    ("out-exists", [*D, "--out", "@demo"], "--force"),
    ("out-file-force", [*D, "--out", "@file", "--force"], "plain.txt"),
    ("out-foreign-force", [*D, "--out", "@folder", "--force"], "some_folder"),
    ("model-missing", ["demo", "--model", "@root/nomodel", "--out", "@root/d"], "nomodel"),
    ("model-corrupt", ["demo", "--model", "@corrupt_model", "--out", "@root/d"], "corrupt"),
]

PROTECT = ["model", "vis", "gt", "results", "overlays", "eval", "analysis", "demo", "run", "folder"]
CASES = [
    pytest.param(argv, needle, id=f"{group}-{cid}")
    for group, cases in (
        ("train", TRAIN_CASES),
        ("complete", COMPLETE_CASES),
        ("evaluate", EVAL_CASES),
        ("analyze", ANALYZE_CASES),
        ("demo", DEMO_CASES),
    )
    for cid, argv, needle in cases
]


def _expand(argv: list, w: dict[str, Path]) -> list[str]:
    out = []
    for a in argv:
        a = str(a)
        if a.startswith("@"):
            name, _, rest = a[1:].partition("/")
            a = str(w[name] / rest) if rest else str(w[name])
        out.append(a)
    return out


@pytest.mark.parametrize(("argv", "needle"), CASES)
def test_bad_input(argv: list, needle: str, w: dict[str, Path], capsys) -> None:
    if CUDA and any(str(a).startswith("cuda") for a in argv):
        pytest.skip("CUDA is available here")
    args = _expand(argv, w)
    needles = [needle] if needle else []
    check_bad_input(args, capsys, *needles, protect=[w[k] for k in PROTECT])
    # a refused start leaves nothing behind that would block the corrected command
    for name in ("t", "c.json", "e", "a", "d"):
        assert not (w["root"] / name).exists(), name


def test_case_count() -> None:
    assert len(CASES) >= 60
