"""Texture in instance synthesis: the re-shape texture measures, the random-feature texture loss,
the generator's noise inputs and their training flags (tiny configs, CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _cli import run_cli
from _inpaint_tiny import make_tiny_scenes
from maskgen.synthesis import MaskSynthesizer
from maskgen.synthesis.model import NOISE_RGB_INIT, SpadeGenerator, SynthNetConfig
from maskgen.synthesis.texture import (
    RandomFeatureStyle,
    hf_energy,
    patch_swd,
    texture_region,
)

TINY = ["--preset", "tiny", "--quiet", "--threads", "1"]


def _grain(seed: int, size: int = 40, sigma: float = 12.0, colour=(150, 60, 40)) -> np.ndarray:
    """A flat colour plus per-pixel grey noise (the built-in scenes' flat material), uint8."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, (size, size, 1))
    return np.clip(np.array(colour, np.float64) + noise, 0, 255).round().astype(np.uint8)


def _disc(size: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 2 - 3) ** 2


def test_texture_region_is_the_new_shape_minus_the_old_visible_pixels() -> None:
    new, old = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    new[1:5, 1:5], old[:, :3] = True, True
    np.testing.assert_array_equal(texture_region(new, old), new & ~old)


def test_hf_energy_separates_smooth_from_grain() -> None:
    region = _disc()
    grain = _grain(0)
    flat = np.full_like(grain, 120)
    assert hf_energy(flat, region) == 0.0
    ramp = np.broadcast_to(np.arange(40, dtype=np.uint8)[None, :, None] * 3, grain.shape).copy()
    assert hf_energy(ramp, region) == pytest.approx(0.0, abs=1e-9)  # linear: no Laplacian
    assert hf_energy(grain, region) > 10 * (hf_energy(_grain(0, sigma=1.0), region) or 1)
    # only pixels whose 3 x 3 neighbourhood lies in the region count: a wild outside is ignored
    wild = grain.copy()
    wild[~region] = np.random.default_rng(5).integers(0, 255, wild[~region].shape)
    assert hf_energy(wild, region) == hf_energy(grain, region)
    tiny = np.zeros_like(region)
    tiny[5:8, 5:8] = True
    assert hf_energy(grain, tiny) is None


def test_patch_swd_compares_texture_not_colour() -> None:
    region = _disc()
    truth = _grain(0)
    assert patch_swd(truth, truth, region) == 0.0
    shifted = np.clip(truth.astype(int) + 30, 0, 255).astype(np.uint8)
    assert patch_swd(shifted, truth, region) == pytest.approx(0.0, abs=1e-6)  # colour: not texture
    smooth = np.full_like(truth, 150)
    same_law = _grain(1)  # another draw of the same material
    d_smooth, d_same = patch_swd(smooth, truth, region), patch_swd(same_law, truth, region)
    assert d_smooth is not None and d_same is not None and d_same < 0.3 * d_smooth
    strip = np.zeros_like(region)
    strip[10:14, :] = True  # 4 px wide: no 5 x 5 patch fits
    assert patch_swd(smooth, truth, strip) is None


def test_random_feature_style_loss() -> None:
    a, b = RandomFeatureStyle(channels=8), RandomFeatureStyle(channels=8)
    assert not list(a.parameters()), "fixed weights: nothing to train"
    assert all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers(), strict=True))
    real = torch.from_numpy(_grain(0, size=32)).permute(2, 0, 1)[None].float() / 127.5 - 1
    # nearly flat (an exactly flat image has zero features: the Gram's gradient vanishes there)
    faint = torch.randn(real.shape, generator=torch.Generator().manual_seed(0)) * 1e-3
    smooth = (torch.full_like(real, float(real.mean())) + faint).requires_grad_(True)
    mask = torch.ones(1, 1, 32, 32)
    assert a(real, real, mask).item() == 0.0
    loss = a(smooth, real, mask)
    assert loss.item() > 0
    loss.backward()
    assert smooth.grad is not None and smooth.grad.abs().sum() > 0
    other = torch.from_numpy(_grain(1, size=32)).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert a(other, real, mask).item() < 0.5 * loss.item()  # the same texture is close
    assert a(smooth, real, torch.zeros_like(mask)).item() == 0.0  # empty mask: no loss


def _gen_inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    m = (torch.rand(2, 1, 32, 32, generator=g) > 0.5).float()
    return coarse, m


def test_noise_inputs_start_silent_and_are_reproducible() -> None:
    torch.manual_seed(0)
    gen = SpadeGenerator(
        SynthNetConfig(width=4, style_dim=3, spade_hidden=4, crop_size=32, noise=True)
    )
    coarse, m = _gen_inputs()
    out, _, _ = gen(coarse, m, m, sample=True)
    grain = (out - coarse)[coarse.abs() < 0.9]  # away from the clamp
    assert abs(grain.std().item() - NOISE_RGB_INIT) < 0.2 * NOISE_RGB_INIT, "faint grain at start"
    torch.nn.init.zeros_(gen.noise_rgb.bias)
    assert torch.equal(gen(coarse, m, m, sample=True)[0], coarse), "else the coarse fill"
    torch.nn.init.normal_(gen.to_rgb.weight, std=0.1)
    gen.eval()
    a = gen(coarse, m, m, noise_gen=torch.Generator().manual_seed(0))[0]
    b = gen(coarse, m, m, noise_gen=torch.Generator().manual_seed(0))[0]
    c = gen(coarse, m, m, noise_gen=torch.Generator().manual_seed(1))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    # one map shared by the batch: a sample's answer does not depend on its batch
    one = gen(coarse[1:], m[1:], m[1:], noise_gen=torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(one[0], a[1])


def test_stored_config_without_noise_loads_without_it() -> None:
    cfg = SynthNetConfig.from_dict({"width": 4, "style_dim": 3, "spade_hidden": 4, "crop_size": 32})
    assert cfg.noise is False and not hasattr(SpadeGenerator(cfg), "noise0")


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory) -> Path:
    return make_tiny_scenes(tmp_path_factory)


def test_train_with_texture_loss_and_noise(tiny_scenes: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = [
        "synth", "train",
        "--data", str(tiny_scenes / "annotations" / "train_coco.json"),
        "--images", str(tiny_scenes / "images" / "train"),
        "--out", str(out), *TINY, "--style-margin", "2", "--style-weight", "5", "--noise",
    ]  # fmt: skip
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    header = json.loads((out / "model" / "config.json").read_text())
    assert header["config"]["noise"] is True and header["training"]["style_weight"] == 5.0
    assert header["training"]["style_margin"] == 2
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["loss_style"] >= 0
    syn = MaskSynthesizer.from_folder(out)
    assert syn.generator.cfg.noise
    yy, xx = np.mgrid[:48, :48]
    vis = (yy - 24) ** 2 + (xx - 20) ** 2 <= 144
    new = (yy - 24) ** 2 + (xx - 27) ** 2 <= 144
    image = _grain(0, size=48)
    first = syn.synthesize(image, vis, new)
    np.testing.assert_array_equal(first, syn.synthesize(image, vis, new))  # one answer
    many = syn.synthesize_many(image, vis, [new, new[:, ::-1].copy()])
    np.testing.assert_array_equal(many[0], first)
    rc, _, err = run_cli(argv[:-3] + ["--style-weight", "-1"], capsys)
    assert rc == 2 and err.startswith("maskgen: error:") and "style-weight" in err


def test_bench_texture_table() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from collections import defaultdict

    import reshape_bench

    tex: dict = defaultdict(list)
    for kind in ("tps", "flip"):
        tex[(kind, "truth", "hf")] += [20.0, 22.0]
        tex[(kind, "mean fill", "hf")] += [0.0, 0.0]
        tex[(kind, "mean fill", "swd")] += [7.0, 9.0]
        tex[(kind, "synthesis", "hf")] += [10.0, 12.0]
        tex[(kind, "synthesis", "swd")] += [3.0, 5.0]
    lines = reshape_bench.texture_table(tex)
    row = next(x for x in lines if x.startswith("| **all non-rigid**"))
    assert row == "| **all non-rigid** | 2 | 21.00 | 11.00 / 4.00 | 0.00 / 8.00 |"


# ------------------------------------------------------------------- exemplar texture transfer


def _half_seen(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """``(visible, new)``: the left 40 % of a square instance seen, the whole square new."""
    new = np.zeros((size, size), bool)
    new[6:-6, 6:-6] = True
    visible = new.copy()
    visible[:, int(size * 0.4) :] = False
    return visible, new


def test_transfer_carries_the_exemplars_grain_and_the_plain_output_does_not() -> None:
    from maskgen.synthesis.transfer import TextureOptions, transfer_texture

    image = _grain(0, size=48)
    visible, new = _half_seen()
    colour = np.array([150.0, 60.0, 40.0], np.float32)  # _grain's colour
    smooth = np.broadcast_to(colour, image.shape).copy()  # a generator's smooth rendering
    smooth[visible] = image[visible]
    region = texture_region(new, visible)
    truth_hf = hf_energy(image, region)
    plain = transfer_texture(image, visible, new, smooth, TextureOptions(texture="none"))
    assert plain is smooth
    out = transfer_texture(image, visible, new, smooth, TextureOptions())
    got = out.clip(0, 255).round().astype(np.uint8)
    assert abs(hf_energy(got, region) - truth_hf) < 0.25 * truth_hf
    assert hf_energy(smooth.astype(np.uint8), region) < 0.05 * truth_hf
    assert patch_swd(got, image, region) < 0.4 * patch_swd(smooth.astype(np.uint8), image, region)
    np.testing.assert_array_equal(out[~region], smooth[~region])  # only the invented part
    assert np.abs(out[region].mean(axis=0) - colour).max() < 3.0  # zero-mean detail on the base
    again = transfer_texture(image, visible, new, smooth, TextureOptions())
    other = transfer_texture(image, visible, new, smooth, TextureOptions(texture_seed=1))
    np.testing.assert_array_equal(out, again)  # deterministic given the seed
    assert not np.array_equal(out, other)


def test_quilting_continues_stripes_from_the_visible_edge() -> None:
    from maskgen.synthesis.transfer import quilt_residual

    size = 48
    xx = np.broadcast_to(np.arange(size), (size, size))
    stripes = np.where((xx // 3) % 2 == 0, 20.0, -20.0).astype(np.float32)  # period 6 px
    residual = np.repeat(stripes[..., None], 3, axis=2)
    visible, new = _half_seen(size)
    target = new & ~visible
    grey = np.zeros((size, size), np.float32)
    rng = np.random.default_rng(0)
    quilt = quilt_residual(residual * visible[..., None], visible, target, grey, grey, 9, 0.0, rng)
    # overlap matching locks the phase: the quilt is the stripes themselves, not a random shift
    assert np.abs(quilt[target] - residual[target]).mean() < 2.0
    lone = quilt_residual(residual * visible[..., None], visible, target, grey, grey, 1, 0.0, rng)
    assert np.abs(lone[target] - residual[target]).mean() > 10.0  # pixels alone cannot


def test_synthesizer_texture_option() -> None:
    from maskgen.synthesis.transfer import TextureOptions

    torch.manual_seed(0)
    gen = SpadeGenerator(SynthNetConfig(width=4, style_dim=3, spade_hidden=4, crop_size=32))
    image = _grain(3, size=48)
    visible, new = _half_seen()
    region = texture_region(new, visible)
    smooth = MaskSynthesizer(gen, texture=TextureOptions(texture="none"))
    textured = smooth.with_texture(TextureOptions())
    assert textured.generator is smooth.generator
    assert MaskSynthesizer(gen).texture == TextureOptions()  # transfer by default
    a = smooth.synthesize(image, visible, new)
    b = textured.synthesize(image, visible, new)
    truth = hf_energy(image, region)
    assert hf_energy(a, region) < 0.2 * truth < 0.8 * hf_energy(b, region)
    np.testing.assert_array_equal(a[~region], b[~region])


def test_texture_options_are_validated() -> None:
    from maskgen.engine import make_config
    from maskgen.errors import MaskgenError
    from maskgen.synthesis.transfer import TextureOptions

    for bad, needle in [
        ({"texture": "wild"}, "--texture wild"),
        ({"texture_patch": 0}, "--texture-patch 0"),
        ({"texture_sigma": float("nan")}, "--texture-sigma nan"),
        ({"texture_guide": -1.0}, "--texture-guide -1"),
    ]:
        with pytest.raises(MaskgenError, match=needle):
            make_config(TextureOptions, **bad)


def test_boundary_cut_follows_the_cheapest_paths() -> None:
    import itertools

    from maskgen.synthesis.transfer import boundary_cut, quilt_residual

    def best_path(err: np.ndarray) -> np.ndarray:  # brute force over 8-connected paths
        rows, cols = err.shape
        paths = [
            q for q in itertools.product(range(cols), repeat=rows)
            if all(abs(a - b) <= 1 for a, b in itertools.pairwise(q))
        ]  # fmt: skip
        return np.array(min(paths, key=lambda q: err[np.arange(rows), q].sum()))

    rng = np.random.default_rng(0)
    idx = np.arange(6)
    for _ in range(5):
        err = rng.random((6, 6))  # continuous costs: one least-cost path
        left, top = best_path(err[:, :3]), best_path(err[:3, :].T)
        expected = (idx[None, :] >= left[:, None]) & (idx[:, None] >= top[None, :])
        np.testing.assert_array_equal(boundary_cut(err, 3), expected)
    # the cut only ever rewrites quilted pixels: the visible residual stays as it is
    image = _grain(2, size=48)
    visible, new = _half_seen()
    residual = (image - image.mean(axis=(0, 1))).astype(np.float32)
    grey = np.zeros((48, 48), np.float32)
    rng = np.random.default_rng(0)
    quilt = quilt_residual(residual, visible, new & ~visible, grey, grey, 9, 0.0, rng, "cut")
    np.testing.assert_array_equal(quilt[visible], residual[visible])
    assert (quilt[~new] == 0).all() and np.abs(quilt[new & ~visible]).mean() > 5
