"""Built-in silhouettes, shape upsampling and offline textures."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

from maskgen.core.masks import connected_components
from maskgen.data.builtin import (
    SILHOUETTES_PATH,
    load_silhouettes,
    silhouette_class_names,
    texture_images,
    upsample_shape,
)
from maskgen.errors import MaskgenError

ROOT = Path(__file__).resolve().parents[1]


def test_silhouettes_shapes_labels_and_size():
    masks, labels, names = load_silhouettes()
    assert masks.shape == (8988, 28, 28) and masks.dtype == bool
    assert labels.shape == (8988,) and labels.dtype == np.int64
    assert names == ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep"]
    assert "zebra" not in names
    assert np.bincount(labels).tolist() == [1000, 993, 1000, 1000, 1000, 1000, 995, 1000, 1000]
    areas = masks.reshape(len(masks), -1).sum(1)
    assert areas.min() >= 40 and 150 < np.median(areas) < 300
    assert SILHOUETTES_PATH.stat().st_size < 400_000
    assert (SILHOUETTES_PATH.parent / "LICENSE-animal-mnist.txt").read_text().count("MIT") >= 1


def test_silhouettes_are_single_components():
    masks, _, _ = load_silhouettes()
    for m in masks[::97]:
        assert connected_components(m, connectivity=8)[1] == 1


def test_silhouette_class_subset_and_copy():
    masks, labels, names = load_silhouettes(["cat", "horse"])
    assert len(masks) == 2000 and set(np.unique(labels)) == {
        names.index("cat"),
        names.index("horse"),
    }
    masks[:] = False  # a copy: the cache is untouched
    assert load_silhouettes(["cat"])[0].any()
    assert silhouette_class_names()[0] == "bear"
    with pytest.raises(MaskgenError, match="zebra"):
        load_silhouettes(["zebra"])


def test_upsample_shape_smooth_and_faithful():
    masks, _, _ = load_silhouettes(["elephant"])
    m = masks[0]
    up = upsample_shape(m, 112)
    assert up.shape == (112, 112) and up.dtype == bool
    # Area scales by 16 (within a few %), and a nearest-neighbour downsample agrees closely.
    assert abs(up.sum() / (16 * m.sum()) - 1) < 0.08
    back = up[2::4, 2::4]
    assert (back == m).mean() > 0.95
    # Smooth outline: a disk sampled at 28x28 comes back closer to the true disk than a
    # nearest-neighbour blow-up does.
    yy, xx = np.mgrid[0:448, 0:448] + 0.5
    disk = (yy - 224) ** 2 + (xx - 224) ** 2 < 150**2
    small = disk.reshape(28, 16, 28, 16).mean((1, 3)) >= 0.5
    true112 = disk.reshape(112, 4, 112, 4).mean((1, 3)) >= 0.5
    nn = np.kron(small, np.ones((4, 4), dtype=bool))
    smooth = upsample_shape(small, 112)
    assert (smooth != true112).sum() < 0.9 * (nn != true112).sum()
    rect = upsample_shape(m, (40, 80))
    assert rect.shape == (40, 80)


def test_upsample_keeps_thin_lines():
    m = np.zeros((28, 28), dtype=bool)
    m[4:24, 14] = True  # a one-pixel-wide leg
    up = upsample_shape(m, 112)
    assert up[20:90, 58].all()


def test_texture_images_offline():
    tex = texture_images(["grass", "coffee"])
    assert list(tex) == ["grass", "coffee"]
    for img in tex.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 10
    with pytest.raises(MaskgenError):
        texture_images(["nope"])


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "derive", ROOT / "scripts" / "derive_animal_silhouettes.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_restricted_unpickler_refuses_other_globals():
    import gzip

    derive = _load_script()
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert (derive.load_array(gzip.compress(pickle.dumps(arr))) == arr).all()
    evil = gzip.compress(pickle.dumps(print))  # builtins.print: not allowed
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        derive.load_array(evil)


def test_clean_silhouette_rules():
    derive = _load_script()
    img = np.zeros((28, 28), dtype=np.uint8)
    img[5:20, 5:20] = 200
    img[10, 10] = 100  # a 1-px speckle hole: filled
    img[12:16, 14:18] = 0  # a 16-px hole: kept
    img[25, 25] = 255  # a stray speck: removed
    m = derive.clean_silhouette(img)
    assert m[10, 10] and not m[13, 15] and not m[25, 25]
    assert m.sum() == 15 * 15 - 16
