"""Cluster application (independence prior, application 2): data, patches, networks, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskgen.data.cluster_images import synthetic_cluster
from maskgen.engine import DistContext
from maskgen.errors import MaskgenError
from maskgen.independence.cluster import (
    LUMA,
    PRESETS,
    ClusterGenerator,
    ClusterTrainer,
    border_alpha,
    build_networks,
    generate_composites,
    ground_offsets,
    info_view,
    layer_cover,
    lift_above_ground,
    low_pass,
    make_config,
    paint_like_behind,
    paint_like_ground,
    prior_scale_at,
    recolour_layers,
    regularizers,
    upsample_x2,
)
from maskgen.independence.cluster_eval import (
    best_disk,
    best_match_iou,
    centred,
    coverage_iou,
    disk_family_coverage,
    foreground_area,
    gt_shapes,
    matching_shapes,
    mean_pairwise_iou,
    read_label_map,
    single_object_flags,
)
from maskgen.independence.cluster_patches import (
    PatchSampler,
    as_rgb_uint8,
    dark_colour,
    disk_mask,
    luminance,
    make_backgrounds,
    shift_ground,
    window_size,
)


@pytest.fixture(scope="module")
def small_cluster():
    return synthetic_cluster(size=96, instance_size=24, seed=3)


def test_synthetic_cluster_labels_are_exact(small_cluster):
    c = small_cluster
    assert c.image.shape == (96, 96, 3) and c.image.dtype == np.uint8
    k = int(c.labels.max())
    assert k == c.info["count"] == len(c.full_masks) and k > 10
    # Dense: background covers little of the image.
    assert (c.labels == 0).mean() < 0.2
    for i in range(k):
        vis = c.labels == i + 1
        assert vis.any()
        assert not (vis & ~c.full_masks[i]).any()  # visible part lies inside the full mask
    # The largest full mask is about instance_size wide.
    widths = [
        int(np.ptp(np.nonzero(m.any(0))[0])) + 1
        for m in c.full_masks
        if not m[0].any() and not m[-1].any() and not m[:, 0].any() and not m[:, -1].any()
    ]
    assert 18 <= max(widths) <= 26
    # Same seed, same image.
    assert np.array_equal(synthetic_cluster(size=96, instance_size=24, seed=3).image, c.image)


def test_synthetic_cluster_silhouette_and_bad_shape():
    c = synthetic_cluster(size=64, instance_size=20, shape="cat", seed=1)
    assert c.labels.max() > 3
    with pytest.raises(MaskgenError, match="unknown cluster shape"):
        synthetic_cluster(size=64, shape="unicorn")


def test_seed_cluster_is_elongated_unlike_fruit():
    # Minor/major axis ratio from each complete mask's second moments: seeds ~0.4, fruit ~0.8.
    def aspects(c):
        out = []
        for m in c.full_masks:
            ys, xs = np.nonzero(m)
            ev = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))
            out.append(np.sqrt(ev[0] / ev[1]))
        return np.median(out)

    seed = synthetic_cluster(size=96, instance_size=24, shape="seed", seed=3)
    fruit = synthetic_cluster(size=96, instance_size=24, shape="fruit", seed=3)
    assert 0.3 < aspects(seed) < 0.5 < 0.7 < aspects(fruit) < 0.9


def test_silhouette_rim_marks_every_outline():
    # The rim changes colours only: same geometry and labels; outline pixels darker.
    rim = synthetic_cluster(size=64, instance_size=20, shape="cat", seed=1, rim=0.6)
    flat = synthetic_cluster(size=64, instance_size=20, shape="cat", seed=1)
    assert np.array_equal(rim.labels, flat.labels)
    top = rim.labels == rim.labels.max()  # the front instance: fully visible
    from scipy import ndimage

    edge = top & ~ndimage.binary_erosion(top)
    lum = rim.image.astype(float).sum(2)
    lum_flat = flat.image.astype(float).sum(2)
    assert (lum[edge] / np.maximum(lum_flat[edge], 1)).mean() < 0.8


def test_patch_sampler_geometry_and_flips(small_cluster):
    s = PatchSampler(small_cluster.image, 24, patch_size=32, flips=True)
    assert s.window == window_size(24) == 36
    assert s.resized.shape[1:] == (round(96 * 32 / 36), round(96 * 32 / 36))
    x = s.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 3, 32, 32) and x.min() >= 0 and x.max() <= 1
    # Without flips every patch is an exact crop of the resized image.
    s2 = PatchSampler(small_cluster.image, 24, patch_size=32, flips=False)
    p = s2.sample(1, torch.Generator().manual_seed(1))[0]
    r = s2.resized
    found = any(
        torch.equal(r[:, y : y + 32, xx : xx + 32], p)
        for y in range(r.shape[1] - 31)
        for xx in range(r.shape[2] - 31)
    )
    assert found


def test_grey_and_rgba_images_are_handled():
    grey = np.full((50, 60), 200, np.uint8)
    assert as_rgb_uint8(grey).shape == (50, 60, 3)
    rgba = np.zeros((50, 60, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    out = as_rgb_uint8(rgba)
    assert out.shape == (50, 60, 3) and 126 <= out[0, 0, 0] <= 129 and out[0, 0, 1] == 0
    PatchSampler(grey, 20, 16)
    PatchSampler(rgba, 20, 16)


def test_bad_geometry_is_a_one_line_error():
    img = np.zeros((40, 50, 3), np.uint8)
    with pytest.raises(MaskgenError, match="larger than the image"):
        PatchSampler(img, 45, 16)
    with pytest.raises(MaskgenError, match="smaller than one patch window"):
        PatchSampler(img, 30, 16)  # window 45 > 40


def test_disk_background():
    m = disk_mask(64)
    assert m[0, 0, 32, 32] == 1 and m[0, 0, 32, 32 + 21] == 0 and m[0, 0, 32, 32 + 19] == 1
    s = PatchSampler(np.full((64, 64, 3), 255, np.uint8), 20, 32)
    bg = make_backgrounds("disk", 2, s)
    assert bg[:, :, 16, 16].max() == 0 and bg[:, :, 0, 0].min() == 1
    assert make_backgrounds("black", 2, s).max() == 0


def test_dark_fill_is_the_images_ground_colour():
    # 70 % ground of one dark colour (with a little noise), 30 % bright objects.
    rng = np.random.default_rng(0)
    img = np.empty((60, 60, 3), np.uint8)
    img[:] = (20, 13, 8)
    img[:, :18] = (235, 115, 30)
    img[:, 18:] += rng.integers(0, 3, size=(60, 42, 3)).astype(np.uint8)
    s = PatchSampler(img, 20, 30)
    assert np.allclose(s.dark_colour.numpy(), np.array([20, 13, 8]) / 255, atol=2 / 255)
    assert torch.allclose(dark_colour(torch.zeros(3, 4, 4)), torch.zeros(3))
    bg = make_backgrounds("disk", 3, s, fill="dark")
    assert torch.allclose(bg[:, :, 15, 15], s.dark_colour.expand(3, 3))
    flat = make_backgrounds("black", 2, s, fill="dark")
    assert torch.allclose(flat, s.dark_colour.view(1, 3, 1, 1).expand(2, 3, 30, 30))
    with pytest.raises(MaskgenError, match="fill"):
        make_backgrounds("disk", 1, s, fill="grey")


def test_generator_table2_shapes():
    g = ClusterGenerator(6, 64, (256, 128, 64), 2)
    z = torch.rand(3, 6) * 2 - 1
    x = g(z)
    assert x.shape == (3, 4, 64, 64) and x.min() >= 0 and x.max() <= 1
    # Table 2: 1x1 "conv" z -> 8*8*256, two 4x4 convs of 256, deconvs 128, 64, 4.
    assert g.fc.weight.shape == (8 * 8 * 256, 6)
    convs = [m for m in g.body if isinstance(m, torch.nn.Conv2d)]
    deconvs = [m for m in g.body if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.weight.shape[:2] for c in convs] == [(256, 256)] * 2
    assert [d.out_channels for d in deconvs] == [128, 64, 4]


def test_resize_upsampling_draws_no_period_two_texture_where_deconv_does():
    torch.manual_seed(0)
    flat = torch.ones(1, 8, 6, 6)  # a featureless input: any texture is the layer's own
    for kind, periodic in (("deconv", True), ("resize", False)):
        up = upsample_x2(8, 3, kind, bias=False)
        out = up(flat)[..., 2:-2, 2:-2]  # away from the zero-padded border
        assert out.shape[-1] == 8
        # Even and odd columns differ for the transposed conv (uneven kernel overlap), not
        # for nearest-neighbour + conv, whose output of a constant input is constant.
        gap = (out[..., 0::2] - out[..., 1::2]).abs().max().item()
        assert (gap > 1e-3) == periodic
    # Computed as one tied transposed convolution, it is the nearest x2 + 3x3 conv it holds.
    resize = upsample_x2(8, 5, "resize", bias=True)
    x = torch.randn(3, 8, 7, 9, requires_grad=True)
    plain = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), resize[1])
    assert torch.allclose(resize(x), plain(x), atol=1e-5)
    grads = [torch.autograd.grad(m(x).square().sum(), x)[0] for m in (resize, plain)]
    assert torch.allclose(*grads, atol=1e-4)
    cfg = make_config("tiny", g_upsample="resize")
    g = ClusterGenerator.from_config(cfg)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    assert g(torch.rand(2, cfg.z_dim)).shape == (2, 4, cfg.patch_size, cfg.patch_size)
    with pytest.raises(MaskgenError, match="g_upsample|g-upsample"):
        make_config("tiny", g_upsample="bicubic")


def test_rgb_lowres_leaves_no_sharp_rgb_edge_but_keeps_alpha():
    # A sharp vertical step (saturated sigmoid, as a generator can make from smooth logits):
    # low-passed by 4 it is spread over several px; unfiltered (alpha) it stays a 1-px step.
    step = torch.full((1, 3, 16, 16), -8.0)
    step[..., 6:] = 8.0
    out = torch.sigmoid(step)
    low = low_pass(out, 4)
    rgb_jump = (low[0, 0, 0, 1:] - low[0, 0, 0, :-1]).abs().max()
    alpha_jump = (out[0, 0, 0, 1:] - out[0, 0, 0, :-1]).abs().max()
    assert alpha_jump > 0.99 and rgb_jump < 0.5
    # Constant colours pass unchanged; the factor is taken from the config.
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(low_pass(flat, 4), flat)
    cfg = make_config("tiny", rgb_lowres=4)
    g = ClusterGenerator.from_config(cfg).eval()
    x = g(torch.rand(3, cfg.z_dim) * 2 - 1)
    assert x.shape == (3, 4, 16, 16) and g.rgb_lowres == 4
    # Inside each 4x4 cell the upsampled RGB varies smoothly: no jump above the cell means'.
    d = (x[:, :3, :, 1:] - x[:, :3, :, :-1]).abs().max()
    cells = F.avg_pool2d(x[:, :3], 4)
    assert d <= (cells[..., 1:] - cells[..., :-1]).abs().max() + 1e-6
    with pytest.raises(MaskgenError, match="--rgb-lowres 3"):
        make_config("tiny", rgb_lowres=3)


def test_paint_like_behind_counts_paint_that_a_transparent_pixel_would_match():
    n, p = 2, 8
    bg = torch.zeros(n, 3, p, p)
    bg[..., 4:] = 0.8  # right half bright, left half black
    layers = torch.zeros(n, 2, 4, p, p)
    # Layer 0: opaque black paint over the whole patch; half of it lies on black.
    layers[:, 0, 3] = 1.0
    assert torch.isclose(paint_like_behind(layers, bg), torch.tensor(0.5), atol=1e-3)
    # Layer 1 on top, opaque orange on the left quarter: behind it is layer 0's black.
    layers[:, 1, :3, :, :2] = torch.tensor([1.0, 0.5, 0.0]).view(3, 1, 1)
    layers[:, 1, 3, :, :2] = 1.0
    share = paint_like_behind(layers, bg)
    assert torch.isclose(share, torch.tensor(p * p * 0.5 / (p * p * 1.25)), atol=1e-3)
    # Only alpha gets a gradient, and only where the paint matches what is behind it.
    layers.requires_grad_(True)
    paint_like_behind(layers, bg).backward()
    g = layers.grad
    assert g[:, :, :3].abs().max() == 0
    assert (g[:, 0, 3, :, :4] > 0).all() and g[:, 0, 3, :, 4:].abs().max() < 1e-6
    assert g[:, 1, 3, :, :2].abs().max() < 1e-6


def test_paint_like_ground_counts_only_paint_in_the_ground_colour():
    n, p = 2, 8
    ground = torch.tensor([0.1, 0.05, 0.0])
    inst = torch.zeros(n, 2, 4, p, p)
    inst[:, :, 3] = 1.0
    inst[:, 0, :3] = ground.view(3, 1, 1)  # instance 0: all ground-coloured
    inst[:, 1, :3, :, :2] = ground.view(3, 1, 1)  # instance 1: a quarter ground-coloured
    inst[:, 1, :3, :, 2:] = torch.tensor([1.0, 0.5, 0.0]).view(3, 1, 1)
    share = paint_like_ground(inst, ground)
    assert torch.isclose(share, torch.tensor((1.0 + 0.25) / 2), atol=1e-3)
    # Two overlapping same-coloured objects cost nothing: only the ground colour counts.
    orange = inst.clone()
    orange[:, :, :3] = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    assert paint_like_ground(orange, ground) < 1e-6
    # Only alpha gets a gradient, and only where the paint is ground-coloured.
    inst.requires_grad_(True)
    paint_like_ground(inst, ground).backward()
    g = inst.grad
    assert g[:, :, :3].abs().max() == 0
    assert (g[:, 1, 3, :, :2] > 0).all() and g[:, 1, 3, :, 2:].abs().max() < 1e-6


def test_paint_like_ground_or_darker_counts_darker_paint_in_full():
    p = 8
    ground = torch.tensor([0.1, 0.05, 0.05])
    inst = torch.ones(1, 1, 4, p, p)
    inst[:, :, :3, :, :4] = 0.0  # left half black: darker than the ground
    inst[:, :, :3, :, 4:] = torch.tensor([1.0, 0.5, 0.0]).view(3, 1, 1)  # right half orange
    two_sided = paint_like_ground(inst, ground)
    one_sided = paint_like_ground(inst, ground, or_darker=True)
    # Black is 0.12 from the ground colour: two-sided it half-counts at sigma 0.1.
    assert 0.1 < two_sided < 0.4
    assert torch.isclose(one_sided, torch.tensor(0.5), atol=1e-3)
    # Brighter than the ground is measured as before.
    inst[:, :, :3, :, :4] = ground.view(3, 1, 1) + 0.3
    assert torch.isclose(
        paint_like_ground(inst, ground, or_darker=True), paint_like_ground(inst, ground)
    )


def test_regularizers_measure_paint_against_the_chosen_reference():
    n, L, p = 2, 3, 8
    inst = torch.rand(n, L, 4, p, p, generator=torch.Generator().manual_seed(0))
    out = {"instances": inst, "z": torch.zeros(n, L, 4)}
    out["layers"], out["background"] = inst, torch.zeros(n, 3, p, p)

    def q(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 4)

    bright = torch.tensor([0.8, 0.8, 0.8])  # most paint is darker than this "ground"
    share = {
        kind: regularizers(q, out, make_config("tiny", paint_against=kind), bright)["paint_loss"]
        for kind in ("behind", "ground", "ground-or-darker")
    }
    assert share["ground-or-darker"] > share["ground"] + 0.2
    assert torch.isclose(share["ground"], paint_like_ground(inst, bright))
    assert not torch.isclose(share["behind"], share["ground"])
    with pytest.raises(ValueError, match="ground colour"):
        regularizers(q, out, make_config("tiny", paint_against="ground"))


def test_border_alpha_is_the_mean_alpha_in_the_edge_band():
    a = torch.zeros(2, 3, 1, 16, 16)
    a[..., 4:12, 4:12] = 1.0  # a centred object: nothing in a 2-px band
    assert border_alpha(a, 2) == 0
    a[..., 15, :] = 1.0  # a strip along the bottom edge: 16 of the 16*16-12*12 = 112 band px
    assert torch.isclose(border_alpha(a, 2), torch.tensor(16 / 112))
    a.requires_grad_(True)
    border_alpha(a, 2).backward()
    assert a.grad[..., 8, 8].abs().max() == 0 and (a.grad[..., 0, :] > 0).all()
    with pytest.raises(MaskgenError, match="--border-px 8"):
        make_config("tiny", border_px=8)


def test_recolour_shifts_each_layer_by_one_colour_and_keeps_alpha():
    layers = torch.rand(3, 4, 4, 8, 8) * 0.5 + 0.25  # RGB in [0.25, 0.75]: no clamping at 0.2
    out = recolour_layers(layers, 0.2, torch.Generator().manual_seed(0))
    assert out.shape == layers.shape and torch.equal(out[:, :, 3], layers[:, :, 3])
    shift = out[:, :, :3] - layers[:, :, :3]
    # One offset per layer and channel, the same at every pixel, inside [-J, J] ...
    assert torch.allclose(shift, shift[..., :1, :1].expand_as(shift), atol=1e-6)
    assert shift.abs().max() <= 0.2 + 1e-6
    # ... drawn independently per layer and per channel.
    offsets = shift[..., 0, 0].reshape(-1)
    assert offsets.unique().numel() == offsets.numel()
    # Ground-coloured paint no longer looks like the ground: a visible halo for D.
    dark = torch.zeros(64, 1, 4, 8, 8)
    dark[:, :, 3] = 1.0
    moved = recolour_layers(dark, 0.25, torch.Generator().manual_seed(1))
    assert (moved[:, 0, :3, 0, 0].max(1).values > 0.05).float().mean() > 0.8
    assert torch.equal(recolour_layers(layers, 0.0), layers)


def test_shift_ground_moves_the_ground_and_keeps_the_objects():
    ground, thr = 0.05, 0.25
    x = torch.full((2, 3, 4, 4), ground)
    x[:, :, :2] = 0.6  # objects: the top half, far above the threshold
    x[:, :, 2, 0] = 0.2  # an outline pixel: 3/4 of the way from ground to threshold
    offset = torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.0, 0.3]])
    out = shift_ground(x, offset, ground, thr)
    assert torch.equal(out[:, :, :2], x[:, :, :2])
    assert torch.allclose(out[:, :, 3], x[:, :, 3] + offset[:, :, None])
    weight = 2 * (thr - 0.2) / (thr - ground)  # 0.5: half moved
    assert torch.allclose(out[:, :, 2, 0], 0.2 + weight * offset)
    assert out.max() <= 1 and out.min() >= 0
    assert torch.equal(shift_ground(x, offset, ground, math.inf), x)


def test_shift_ground_with_cover_never_moves_what_layers_cover():
    ground, thr = 0.05, 0.25
    x = torch.full((1, 3, 2, 3), ground)  # all ground-coloured: paint, edge, bare ground
    cover = torch.tensor([[[[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]]]])
    offset = torch.tensor([[0.4, 0.2, 0.1]])
    out = shift_ground(x, offset, ground, thr, cover)
    assert torch.equal(out[..., 0], x[..., 0])  # opaque paint in the ground colour stays dark
    assert torch.allclose(out[..., 1], x[..., 1] + 0.5 * offset[:, :, None])
    assert torch.allclose(out[..., 2], x[..., 2] + offset[:, :, None])


def test_layer_cover_is_the_union_of_the_alphas():
    a = torch.tensor([0.5, 0.5, 0.0]).view(1, 3, 1, 1, 1)
    assert torch.allclose(layer_cover(a), torch.tensor(0.75).view(1, 1, 1, 1))
    assert torch.equal(layer_cover(torch.zeros(2, 4, 1, 3, 3)), torch.zeros(2, 1, 3, 3))


def test_ground_offsets_reach_any_colour_at_one_and_nothing_at_zero():
    ground = torch.tensor([0.05, 0.04, 0.03])
    off = ground_offsets(4000, ground, 1.0, torch.Generator().manual_seed(0))
    colours = ground + off
    assert colours.min() >= 0 and colours.max() <= 1
    assert colours.min() < 0.01 and colours.max() > 0.99 and colours.std(0).min() > 0.25
    assert torch.equal(ground_offsets(3, ground, 0.0), torch.zeros(3, 3))


def test_ground_jitter_moves_real_and_background_ground_alike_and_leaves_layers():
    from maskgen.independence.cluster_patches import PatchSampler

    img = np.zeros((48, 48, 3), np.uint8)
    img[8:20, 8:20] = (200, 150, 60)  # a bright object on a black ground
    img[28:40, 26:44] = (180, 120, 40)
    cfg = make_config("tiny", ground_jitter=1.0)
    trainer = ClusterTrainer(cfg, PatchSampler(img, 16, cfg.patch_size), DistContext())
    torch.manual_seed(0)
    real, out = trainer.generate_phase()
    dark = luminance(real) < 0.05
    assert dark.float().mean() < 0.05  # the black ground took other colours ...
    assert (real.amax(1) > 0.5).float().mean() > 0.3  # ... most of them far from black
    bg = out["background"]
    assert (luminance(bg) < 0.05).float().mean() < 0.05  # the background's ground too
    z = out["z"]
    plain = generate_composites(trainer.g, cfg, len(z), torch.zeros_like(bg), z=z)
    assert torch.equal(out["instances"], plain["instances"])  # the providers are untouched


def test_jitter_at_composite_moves_the_composites_ground_after_the_layers_go_on():
    from maskgen.independence.cluster_patches import PatchSampler

    img = np.zeros((48, 48, 3), np.uint8)
    img[8:20, 8:20] = (200, 150, 60)
    img[28:40, 26:44] = (180, 120, 40)
    cfg = make_config("tiny", ground_jitter=1.0, jitter_at="composite")
    trainer = ClusterTrainer(cfg, PatchSampler(img, 16, cfg.patch_size), DistContext())
    p = cfg.patch_size

    def paint(z):  # opaque black squares: paint in the ground's colour
        rgba = torch.zeros(len(z), 4, p, p)
        rgba[:, 3, p // 4 : p // 2, p // 4 : p // 2] = 1.0
        return rgba

    trainer.gw = paint
    torch.manual_seed(0)
    real, out = trainer.generate_phase()
    assert (luminance(real) < 0.05).float().mean() < 0.05  # the real ground moved
    bg = out["background"]
    assert (luminance(bg) < 0.01).float().mean() > 0.3  # the background's black disk did not
    cover = layer_cover(out["layers"][:, :, 3:4])

    from maskgen.independence.composition import compose

    layers = out["layers"]
    plain = compose([(layers[:, i, :3], layers[:, i, 3:4]) for i in range(cfg.layers)], bg)
    opaque = (cover > 0.999).expand_as(plain)
    assert opaque.any() and torch.allclose(out["composite"][opaque], plain[opaque])
    bare = ((cover < 1e-3) & (luminance(bg)[:, None] < 0.01)).expand_as(plain)
    assert (out["composite"][bare] - plain[bare]).abs().mean() > 0.1  # bare ground moved


def test_info_view_hides_the_colour_from_q_with_alpha():
    inst = torch.rand(5, 4, 8, 8)
    assert torch.equal(info_view(inst, "rgba"), inst)
    seen = info_view(inst, "alpha")
    assert torch.equal(seen[:, 3], inst[:, 3]) and (seen[:, :3] == 0.5).all()
    recoloured = inst.clone()
    recoloured[:, :3] = torch.rand(5, 3, 8, 8)
    assert torch.equal(info_view(recoloured, "alpha"), seen)  # colour carries nothing to Q
    with pytest.raises(ValueError, match="rgba or alpha"):
        info_view(inst, "rgb")


def test_info_term_with_alpha_input_reaches_g_through_the_mask_only():
    cfg = make_config("tiny", info_input="alpha")
    g, _, q = build_networks(cfg)
    bg = torch.zeros(2, 3, cfg.patch_size, cfg.patch_size)
    out = generate_composites(g, cfg, 2, bg)
    out["instances"].retain_grad()
    reg = regularizers(q, out, cfg)
    assert torch.isfinite(reg["info_loss"])
    zhat = q(info_view(out["instances"][:, 0], cfg.info_input))  # the term regularizers() adds
    F.mse_loss(zhat, out["z"][:, 0]).backward()
    grad = out["instances"].grad[:, 0]
    assert grad[:, :3].abs().max() == 0 and grad[:, 3].abs().max() > 0


def test_lift_above_ground_floors_luminance_and_leaves_the_hue_free():
    ground = torch.tensor([0.05, 0.04, 0.06])
    rgb = torch.rand(6, 3, 8, 8) * 0.4
    rgb.requires_grad_(True)
    out = lift_above_ground(rgb, ground, 0.2)
    w = torch.tensor(LUMA)
    lum_in = torch.einsum("mchw,c->mhw", rgb.detach(), w)
    lum_out = torch.einsum("mchw,c->mhw", out.detach(), w)
    floor = float(ground @ w) + 0.2
    assert lum_out.min() >= floor - 1e-5 and out.min() >= 0 and out.max() <= 1
    high = lum_in >= floor  # already bright enough: untouched
    assert torch.equal(
        out.detach().permute(1, 0, 2, 3)[:, high], rgb.detach().permute(1, 0, 2, 3)[:, high]
    )
    # Lifted pixels keep their channel differences (the hue) and pass gradient to them.
    low = ~high
    diff_in = (rgb[:, 0] - rgb[:, 1]).detach()[low]
    diff_out = (out[:, 0] - out[:, 1]).detach()[low]
    assert torch.allclose(diff_in, diff_out, atol=1e-6)
    (out[:, 0] - out[:, 1]).sum().backward()
    assert rgb.grad.abs().sum() > 0


def test_colour_floor_needs_the_ground_colour():
    cfg = make_config("tiny", colour_floor=0.2)
    g, _, _ = build_networks(cfg)
    z = torch.rand(2, cfg.z_dim) * 2 - 1
    with pytest.raises(ValueError, match="ground"):
        g(z)
    g.ground = torch.tensor([0.1, 0.1, 0.1])
    lum = torch.einsum("mchw,c->mhw", g(z)[:, :3].detach(), torch.tensor(LUMA))
    assert lum.min() >= 0.3 - 1e-5


def test_recolour_changes_training_composites_only():
    cfg = make_config("tiny", recolour=0.3)
    g, _, _ = build_networks(cfg)
    bg = torch.zeros(2, 3, cfg.patch_size, cfg.patch_size)
    z = torch.rand(2, cfg.layers, cfg.z_dim) * 2 - 1
    plain = generate_composites(g, cfg, 2, bg, z=z, generator=torch.Generator().manual_seed(0))
    moved = generate_composites(
        g, cfg, 2, bg, z=z, generator=torch.Generator().manual_seed(0), recolour=0.3
    )
    assert torch.equal(plain["instances"], moved["instances"])
    assert torch.equal(plain["layers"][:, :, 3], moved["layers"][:, :, 3])
    assert not torch.allclose(plain["composite"], moved["composite"])


def test_presets_follow_table4():
    expect = {
        "crowd": (8, 6, 0.1, 30, False),
        "fruit": (10, 5, 0.25, 32, True),
        "seed": (12, 2, 0.25, 26, True),
    }
    for name, (layers, zd, a, pad, flips) in expect.items():
        c = make_config(name)
        assert (c.layers, c.z_dim, c.area_target, c.pad, c.flips) == (layers, zd, a, pad, flips)
        assert c.area_weight == 1000 and c.info_weight == 50 and c.patch_size == 64
        assert c.binary_weight == 0  # paper settings: no extra terms
        assert c.lr_d == 2e-4 and c.lr_g == 4e-4 and c.betas == (0.5, 0.999)
    assert "cpu" in PRESETS
    with pytest.raises(MaskgenError):
        make_config("nope")


def test_quality_preset_is_cpu_at_64_with_more_layers():
    cpu, q = make_config("cpu"), make_config("quality")
    assert (q.patch_size, q.layers, q.pad) == (64, 16, 24)
    changed = {k for k in vars(cpu) if getattr(cpu, k) != getattr(q, k)}
    assert changed == {"patch_size", "layers", "pad", "preset"}


def test_shapes_preset_is_quality_with_the_ground_jitter_after_composition():
    q, s = make_config("quality"), make_config("shapes")
    assert (s.ground_jitter, s.jitter_at, s.density) == (1.0, "composite", "matched")
    changed = {k for k in vars(q) if getattr(q, k) != getattr(s, k)}
    assert changed == {"ground_jitter", "jitter_at", "density", "preset"}


def test_prior_anneal_schedule_reaches_zero():
    # Curriculum: full prior at step 0, linear decay, exactly 0 from prior_anneal on.
    cfg = make_config("tiny", alpha_prior=4.0, prior_anneal=10)
    assert [prior_scale_at(s, cfg) for s in (0, 5, 10, 11, 1000)] == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert prior_scale_at(500, make_config("tiny", alpha_prior=4.0)) == 1.0  # fixed prior
    assert prior_scale_at(0, make_config("tiny", alpha_prior=0.0, prior_anneal=10)) == 0.0
    # Scale 0 removes the bias entirely; scale 1 adds the centred disk (inside > outside).
    torch.manual_seed(0)
    g = ClusterGenerator(2, 16, (8, 8, 8), 1, alpha_prior=4.0, area_target=0.2).eval()
    z = torch.zeros(1, 2)
    g.prior_scale = 0.0
    bare = torch.logit(g(z)[0, 3].clamp(1e-6, 1 - 1e-6).double())
    g.prior_scale = 1.0
    with_prior = torch.logit(g(z)[0, 3].clamp(1e-6, 1 - 1e-6).double())
    diff = with_prior - bare
    assert torch.allclose(diff, g.logit_bias[0, 3].double(), atol=1e-3)
    assert diff[8, 8] > 3.0 and diff[0, 0] < -3.0


def test_r1_step_penalises_d_gradients_on_real_patches():
    from maskgen.independence.cluster import r1_step

    torch.manual_seed(0)
    _, d, _ = build_networks(make_config("tiny"))
    opt = torch.optim.Adam(d.parameters(), 1e-3)
    before = [p.detach().clone() for p in d.parameters()]
    pen = r1_step(d, opt, torch.rand(4, 3, 16, 16), gamma=1.0, every=4)
    assert pen > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, d.parameters(), strict=True))


def test_composites_and_discriminator_shapes():
    cfg = make_config("tiny")
    g, d, q = build_networks(cfg)
    bg = torch.zeros(2, 3, 16, 16)
    out = generate_composites(g, cfg, 2, bg)
    assert out["instances"].shape == (2, cfg.layers, 4, 16, 16)
    assert out["composite"].shape == (2, 3, 16, 16)
    assert d(out["composite"]).shape[:2] == (2, 1)
    assert q(out["instances"][:, 0]).shape == (2, cfg.z_dim)


def test_metrics_on_known_masks(small_cluster):
    shapes, areas = gt_shapes(small_cluster.labels, 1.0)
    assert len(shapes) > 3
    a_ref = float(np.percentile(areas, 90))
    r = int(np.sqrt(a_ref / np.pi))
    yy, xx = np.mgrid[:32, :32]
    one = ((yy - 16) ** 2 + (xx - 16) ** 2) <= r * r
    two = (((yy - 8) ** 2 + (xx - 8) ** 2) <= 16) | (((yy - 24) ** 2 + (xx - 24) ** 2) <= 16)
    big = np.ones((32, 32), bool)
    ok, ncomp = single_object_flags(np.stack([one, two, big, np.zeros_like(one)]), a_ref)
    assert ok.tolist() == [True, False, False, False]
    assert ncomp.tolist()[:2] == [1, 2]
    # A GT shape matches itself exactly wherever it sits.
    s = shapes[0]
    shifted = np.zeros((40, 40), bool)
    shifted[3 : 3 + s.shape[0], 5 : 5 + s.shape[1]] = s
    iou = best_match_iou(shifted[None], shapes, canvas=64)
    assert iou[0] == pytest.approx(1.0)
    assert centred(np.zeros((8, 8), bool), 16).sum() == 0


def test_shape_variety_and_best_disk_reference():
    yy, xx = np.mgrid[:32, :32]
    disk = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2) <= 36
    bar = (np.abs(yy - 15.5) <= 2) & (np.abs(xx - 15.5) <= 10)
    # One shape for every z scores 1 wherever it sits; different shapes score less.
    assert mean_pairwise_iou(np.stack([disk, np.roll(disk, 3, axis=1)]), 64) == pytest.approx(1)
    assert mean_pairwise_iou(np.stack([disk, bar]), 64) < 0.5
    with pytest.raises(MaskgenError):
        mean_pairwise_iou(disk[None], 64)
    # GT disks of radius 6: the best disk is radius ~6 and matches exactly.
    r, iou = best_disk([disk[8:24, 8:24]], 32, 64)
    assert r == pytest.approx(6, abs=0.5) and iou == pytest.approx(1.0, abs=0.02)
    # GT bars: no disk comes close, while the bar itself (a learned shape) beats the disk.
    _, iou_bar = best_disk([bar], 32, 64)
    assert iou_bar < 0.6
    assert best_match_iou(bar[None], [bar], 64)[0] > iou_bar
    # Coverage: GT bars in both orientations. A generator of disks of every radius covers
    # neither well; one bar covers its own orientation only (crossed 4x20 bars: IoU 16/144);
    # both orientations cover both exactly.
    bars = [bar, bar.T]
    disk_cov = disk_family_coverage(bars, 32, 64)
    assert disk_cov < 0.6
    assert coverage_iou(bar[None], bars, 64).tolist() == pytest.approx([1.0, 16 / 144])
    assert coverage_iou(np.stack(bars), bars, 64).mean() == pytest.approx(1.0)
    assert coverage_iou(np.stack(bars), bars, 64).mean() > disk_cov
    # Fragments below the plausible size are no matching targets: a 2-px speck would match a
    # tiny blob perfectly.
    speck = np.ones((1, 2), bool)
    kept = matching_shapes([disk, speck], np.array([float(disk.sum()), 2.0]), float(disk.sum()))
    assert len(kept) == 1 and kept[0] is disk


def test_label_map_reader_and_foreground(tmp_path):
    from PIL import Image

    lab = np.zeros((10, 12, 3), np.uint8)
    lab[2:4, 2:4] = (255, 0, 0)
    lab[6:8, 6:9] = (0, 255, 0)
    Image.fromarray(lab).save(tmp_path / "rgb.png")
    m = read_label_map(tmp_path / "rgb.png")
    assert m.shape == (10, 12) and len(np.unique(m)) == 3 and m[0, 0] == 0
    blocks = np.kron(np.arange(12, dtype=np.uint16).reshape(3, 4) * 10, np.ones((4, 4), np.uint16))
    Image.fromarray(blocks).save(tmp_path / "g16.png")
    assert read_label_map(tmp_path / "g16.png").max() == 110
    # A photo is no label map: its neighbouring pixels rarely share a colour.
    photo = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with pytest.raises(MaskgenError, match="looks like a photo"):
        read_label_map(tmp_path / "photo.png")
    with pytest.raises(MaskgenError, match="is a folder"):
        read_label_map(tmp_path)
    img = np.zeros((10, 10, 3), np.uint8)
    img[:3] = 250
    assert foreground_area(img, "bright") == 30
    assert foreground_area(img, "dark") == 70
    assert foreground_area(img, "all") == 100
    with pytest.raises(MaskgenError):
        read_label_map(tmp_path / "missing.png")


def test_nuclei_missing_mahotas_says_how_to_install(monkeypatch):
    import importlib.util

    from maskgen.data import cluster_images

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "mahotas" else real(n, *a)
    )
    with pytest.raises(MaskgenError, match=r"pip install 'maskgen\[data\]'"):
        cluster_images.nuclei()


def test_coins_builtin():
    from maskgen.data.cluster_images import coins

    c = coins()
    assert c.image.shape == (303, 384, 3) and c.labels is None and c.instance_size == 60


def test_generator_model_folder_round_trip_is_strict(tmp_path):
    from maskgen.errors import MaskgenError
    from maskgen.independence.cluster import ClusterPredictor

    cfg = make_config("tiny", instance_size=20.0)
    torch.manual_seed(0)
    g = ClusterGenerator.from_config(cfg).eval()
    g.facts = {"instance_size": 20.0, "window": 30, "image_size": [80, 80]}
    g.prior_scale = 0.0
    g.save_folder(tmp_path / "m")
    back = ClusterGenerator.from_folder(tmp_path / "m")
    assert back.config == cfg and back.facts["window"] == 30 and back.prior_scale == 0.0
    z = torch.rand(3, cfg.z_dim) * 2 - 1
    with torch.no_grad():
        assert torch.equal(g(z), back(z))
    pred = ClusterPredictor(back)
    assert pred.window == 30 and pred.image_size == [80, 80]
    # Weights of another architecture are refused with a one-line message naming the keys.
    other = ClusterGenerator.from_config(make_config("tiny", z_dim=3))
    other.facts = dict(g.facts)
    other.save_folder(tmp_path / "other")
    header = (tmp_path / "other" / "config.json").read_text().replace('"z_dim": 3', '"z_dim": 2')
    (tmp_path / "other" / "config.json").write_text(header)
    with pytest.raises(MaskgenError, match="weights do not match"):
        ClusterGenerator.from_folder(tmp_path / "other")
    with pytest.raises(MaskgenError, match="--num 0"):
        pred.sample(0)


def test_trainer_step_is_named_phases_and_finite():
    c = synthetic_cluster(size=64, instance_size=20, seed=1)
    cfg = make_config("tiny", instance_size=20.0, r1_weight=1.0, ema_decay=0.9)
    torch.manual_seed(0)
    t = ClusterTrainer(cfg, PatchSampler(c.image, 20, cfg.patch_size), DistContext())
    assert set(t.resumable) == {"g", "d", "q", "opt_g", "opt_d", "ema"}
    m = t.step(0)
    assert {"loss_d", "d_real", "loss_g", "mask_area", "info_loss", "r1", "prior_scale"} <= set(m)
    assert all(np.isfinite(float(v)) for v in m.values())
    assert "r1" not in t.step(1)  # lazy R1: every r1_every (4) steps


def test_layers_to_match_density_keeps_the_prefix_nearest_the_share():
    from maskgen.independence.cluster import layers_to_match_density

    # Four layers, each opaque on its own quarter of an 8x8 patch: k layers cover k/4.
    alphas = torch.zeros(1, 4, 1, 8, 8)
    for i in range(4):
        alphas[0, i, 0, 2 * i : 2 * i + 2] = 1.0
    none = torch.zeros(1, 1, 8, 8)
    for share, k in ((0.0, 0), (0.3, 1), (0.5, 2), (0.9, 4), (1.0, 4)):
        keep = layers_to_match_density(alphas, torch.tensor([share]), none)
        assert keep.tolist() == [[1.0] * k + [0.0] * (4 - k)], share
    # Ground that already shows foreground (layer 0's quarter and one more) counts first.
    bright = torch.zeros(1, 1, 8, 8)
    bright[0, 0, :2] = 1.0
    bright[0, 0, 6:] = 1.0
    keep = layers_to_match_density(alphas, torch.tensor([0.5]), bright)
    assert keep.tolist() == [[0.0, 0.0, 0.0, 0.0]]
    keep = layers_to_match_density(alphas, torch.tensor([0.75]), bright)
    assert keep.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    # Counted inside a region only (matched-disk): the rows of layers 2 and 3 alone.
    region = torch.zeros(8, 8)
    region[4:] = 1.0
    keep = layers_to_match_density(alphas, torch.tensor([0.5]), none, region)
    assert keep.tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_bright_share_uses_otsus_threshold_and_a_flat_image_has_none():
    from maskgen.independence.cluster_patches import bright_share, otsu_luminance, otsu_threshold

    img = torch.zeros(3, 10, 10)
    img[:, :3] = 0.8
    thr = otsu_luminance(img)
    assert 0.0 <= thr < 0.8
    assert bright_share(img[None], thr).tolist() == [pytest.approx(0.3)]
    region = torch.zeros(10, 10)
    region[:5] = 1.0
    assert bright_share(img[None], thr, region).tolist() == [pytest.approx(0.6)]
    assert otsu_threshold(np.full((4, 4), 0.5)) == float("inf")
    assert (
        bright_share(
            torch.full((1, 3, 4, 4), 0.5), otsu_luminance(torch.full((3, 4, 4), 0.5))
        ).item()
        == 0.0
    )
