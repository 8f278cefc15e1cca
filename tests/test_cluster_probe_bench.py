"""benchmarks/cluster_probe.py on a tiny cluster: the object banks are the true objects (and
area-matched disks), the whole probe runs through the trainer's own D phase, and its AUC means
what it says."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from maskgen.data.cluster_images import synthetic_cluster, synthetic_layers

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location(
        "cluster_probe", REPO / "benchmarks/cluster_probe.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synthetic_layers_are_the_objects_the_cluster_is_drawn_from():
    from maskgen.core.compositing import composite
    from maskgen.data.cluster_images import BACKGROUND_RGB

    c = synthetic_cluster(size=64, instance_size=20, shape="cat", seed=1)
    alphas, colours = synthetic_layers((64, 64), instance_size=20, shape="cat", seed=1)
    assert alphas.shape[1:] == (64, 64) and colours.shape == (*alphas.shape, 3)
    drawn = alphas.reshape(len(alphas), -1).max(1) > 0.5  # the cluster drops the faint ones
    bg = np.broadcast_to(BACKGROUND_RGB, (64, 64, 3))
    img = composite(colours[drawn], alphas[drawn], bg)
    assert np.abs(np.round(img * 255) - c.image).max() <= 1
    kept = [a > 0.5 for a in alphas if (a > 0.5).any()]
    for full in c.full_masks:  # every labelled complete mask is one of the layers
        assert any(np.array_equal(full, k) for k in kept)


def test_banks_keep_true_shapes_and_swap_in_disks_of_the_same_area(probe):
    alphas, colours = synthetic_layers((96, 96), instance_size=24, shape="horse", seed=3)
    b = probe.banks(alphas, colours, 24, 16)
    n = len(b["shape"])
    assert n > 3 and all(v.shape == (n, 4, 16, 16) for v in b.values())
    shape_a, disk_a = b["shape-flat"][:, 3], b["disk-flat"][:, 3]
    assert np.array_equal(b["shape"][:, 3].numpy(), shape_a.numpy())
    area_s, area_d = shape_a.sum((1, 2)), disk_a.sum((1, 2))
    assert (abs(area_d - area_s) / area_s).max() < 0.15  # same area (up to the disk's edge)
    flat = b["shape-flat"][:, :3]
    assert flat.std((2, 3)).max() < 1e-5  # one colour per object
    assert np.array_equal(flat.numpy(), b["disk-flat"][:, :3].numpy())
    iou = ((shape_a > 0.5) & (disk_a > 0.5)).sum((1, 2)) / ((shape_a > 0.5) | (disk_a > 0.5)).sum(
        (1, 2)
    )
    assert float(iou.mean()) < 0.8  # horses are not disks


def test_probe_runs_the_trainers_d_phase_and_records(probe, tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(probe, "EVAL_BATCHES", 2)
    flags = ["--preset", "tiny", "--steps", "3", "--ground-jitter", "1", "--density", "matched"]
    for label, more in (("plain", []), ("sil", ["--silhouette-weight", "1"])):
        rc = probe.main(["--shape", "fruit", "--work", str(tmp_path), "--seeds", "0", "--no-record",
                         "--label", label, "--", *flags, *more])  # fmt: skip
        assert rc == 0
        results = json.loads((tmp_path / f"probe-{label}.json").read_text())
        (res,) = [r for r in results if r["against"] == "disk-flat"]
        # The silhouette D is scored beside D when the flags train one.
        assert set(res["views"]) == ({"rgb", "silhouette"} if more else {"rgb"})
        for view in res["views"].values():
            assert set(view["auc"]) == {"shape", "shape-flat", "disk-flat"}
            assert all(0.0 <= v <= 1.0 for v in view["auc"].values())
            assert all(0.0 < v < 1.0 for v in view["p_real"].values())
