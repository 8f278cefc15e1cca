"""Shared independence-prior modules: discriminator, losses, layout, composition, GAN phases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgen.core.compositing import composite
from maskgen.core.warp import translation_theta
from maskgen.independence.composition import compose, compose_rgba
from maskgen.independence.discriminator import (
    DISCRIMINATOR_PRESETS,
    ConvSpec,
    SNDiscriminator,
    cover_patch,
    receptive_field,
    specs_from_config,
)
from maskgen.independence.gan import (
    area_weight_at,
    detect_collapse,
    discriminator_step,
    ema_update,
    generator_step,
)
from maskgen.independence.layout import (
    identity_layout,
    pad_and_random_crop,
    random_rotation,
    spatial_transform_layout,
)
from maskgen.independence.losses import (
    area_penalty,
    d_loss_hinge,
    d_loss_nonsaturating,
    distillation_loss,
    g_loss_nonsaturating,
    mask_areas,
    smooth_l1_distillation,
)


def test_discriminator_shapes_and_spectral_norm():
    torch.manual_seed(0)
    d = SNDiscriminator("app1-paper")
    out = d(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 1, 8, 8)  # four stride-2 layers: 128 / 16
    d2 = SNDiscriminator("app2-paper")
    assert d2(torch.rand(2, 3, 64, 64)).shape == (2, 1, 4, 4)
    # Paper widths (Table 1): 64,128,256,512,256 then 1x1 -> 1.
    assert [s.channels for s in DISCRIMINATOR_PRESETS["app1-paper"]] == [64, 128, 256, 512, 256]
    # Spectral norm: after power iterations the largest singular value of each weight is ~1.
    d.train()
    for _ in range(30):
        d(torch.rand(1, 3, 32, 32))
    conv = d.net[0]
    w = conv.weight.detach().reshape(conv.weight.shape[0], -1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)
    assert specs_from_config(d.config()["specs"]) == d.specs
    with pytest.raises(ValueError, match="unknown discriminator preset"):
        SNDiscriminator("nope")


def _field_by_gradient(specs: tuple[ConvSpec, ...], size: int) -> int:
    """Side of the input window that moves the centre logit, read from the gradient."""
    torch.manual_seed(0)
    d = SNDiscriminator(specs, spectral=False)
    x = torch.rand(1, 3, size, size, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    cols = x.grad.abs().sum((0, 1, 2)).nonzero().ravel()
    return int(cols.max() - cols.min() + 1)


def test_receptive_field_and_cover_patch_match_the_gradient():
    # The cluster trainer's cpu stack sees 31 px per output; the paper's Table 2 stack 63.
    cpu = (ConvSpec(32), ConvSpec(64), ConvSpec(128), ConvSpec(128, 3, 1))
    assert receptive_field(cpu) == 31 == _field_by_gradient(cpu, 128)
    assert receptive_field(DISCRIMINATOR_PRESETS["app2-paper"]) == 63
    assert cover_patch(cpu, 32) == cpu  # already sees a 32 px patch
    wide = cover_patch(cpu, 64)
    # One stride-2 layer of the previous width, inserted before the stride-1 head.
    assert wide == (*cpu[:3], ConvSpec(128, 3, 2), cpu[3])
    assert receptive_field(wide) == 63 == _field_by_gradient(wide, 128)
    assert receptive_field(cover_patch(cpu, 200)) >= 199
    assert SNDiscriminator(wide)(torch.rand(2, 3, 64, 64)).shape == (2, 1, 4, 4)


def test_area_penalty_matches_eq7():
    # Two layers, batch 2: areas (0.5, 0.25) and (0, 1).
    a = torch.zeros(2, 2, 1, 4, 4)
    a[0, 0, :, :2] = 1.0
    a[0, 1, :, :1] = 1.0
    a[1, 1] = 1.0
    areas = mask_areas(a)
    assert torch.allclose(areas, torch.tensor([[0.5, 0.25], [0.0, 1.0]]))
    expect = np.mean([(0.5 - 0.25) ** 2, 0.0, 0.25**2, 0.75**2])
    assert area_penalty(a, 0.25).item() == pytest.approx(expect)
    # List form equals the stacked form.
    assert area_penalty([a[:, 0], a[:, 1]], 0.25).item() == pytest.approx(expect)


def test_adversarial_losses_values():
    real = torch.tensor([0.0])
    fake = torch.tensor([0.0])
    assert d_loss_nonsaturating(real, fake).item() == pytest.approx(2 * np.log(2))
    assert g_loss_nonsaturating(torch.tensor([0.0])).item() == pytest.approx(np.log(2))
    assert d_loss_hinge(torch.tensor([2.0]), torch.tensor([-2.0])).item() == 0.0


def test_smooth_l1_eq8():
    x = torch.tensor([0.0, 0.1, -0.2, 0.25, -0.5, 1.0])
    expect = torch.tensor([0.0, 0.04, 0.16, 0.25, 0.5, 1.0])
    assert torch.allclose(smooth_l1_distillation(x), expect)
    assert distillation_loss(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)).item() == 1.0


def test_compose_matches_numpy_compositing():
    g = torch.Generator().manual_seed(1)
    bg = torch.rand(1, 3, 5, 5, generator=g)
    rgb1, a1 = torch.rand(1, 3, 5, 5, generator=g), torch.rand(1, 1, 5, 5, generator=g)
    rgb2, a2 = torch.rand(1, 3, 5, 5, generator=g), torch.rand(1, 1, 5, 5, generator=g)
    out = compose([(rgb1, a1), (rgb2, a2)], bg)
    ref = composite(
        np.stack([rgb1[0].permute(1, 2, 0).numpy(), rgb2[0].permute(1, 2, 0).numpy()]),
        np.stack([a1[0, 0].numpy(), a2[0, 0].numpy()]),
        bg[0].permute(1, 2, 0).numpy(),
    )
    assert np.allclose(out[0].permute(1, 2, 0).numpy(), ref, atol=1e-6)
    # Black x_0 when no background; RGBA form agrees.
    out2 = compose_rgba([torch.cat([rgb2, a2], 1)])
    assert torch.allclose(out2, rgb2 * a2)


def test_layouts():
    x = torch.rand(3, 4, 8, 8)
    assert identity_layout(x) is x
    # Integer translation by one pixel: theta shifts content right by 2/W normalised units.
    theta = translation_theta(torch.full((3,), 2.0 / 8), torch.zeros(3))
    y = spatial_transform_layout(x, theta)
    assert torch.allclose(y[..., 1:], x[..., :-1], atol=1e-5)
    assert torch.all(y[..., 0] == 0)
    g = torch.Generator().manual_seed(0)
    z = pad_and_random_crop(x, 3, g)
    assert z.shape == x.shape
    # Each output is a shifted copy: its non-zero content matches x at some offset.
    for n in range(3):
        found = False
        for dy in range(-3, 4):
            for dx in range(-3, 4):
                p = torch.nn.functional.pad(x[n], (3, 3, 3, 3))
                if torch.equal(p[:, 3 + dy : 11 + dy, 3 + dx : 11 + dx], z[n]):
                    found = True
        assert found
    # Same generator seed -> same crops.
    assert torch.equal(z, pad_and_random_crop(x, 3, torch.Generator().manual_seed(0)))


def test_random_rotation_turns_each_layer_about_its_centre():
    p = 33
    yy, xx = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    c = (p - 1) / 2
    disk = (((yy - c) ** 2 + (xx - c) ** 2) <= 8**2).float()
    bar = ((yy - c).abs() <= 2) & ((xx - c).abs() <= 12)  # a horizontal bar
    x = torch.stack([disk, bar.float()])[:, None].repeat(1, 4, 1, 1)  # 2 x 4 x P x P
    assert random_rotation(x, 0.0) is x
    turned = random_rotation(x.repeat(16, 1, 1, 1), 180.0, torch.Generator().manual_seed(0))
    # A centred disk is the same at every angle; the bar keeps its area but not its direction.
    changed = (turned[0::2, 3] > 0.5) != (disk > 0.5)
    assert int(changed.sum((1, 2)).max()) <= 24  # a digital disk's rim, of ~200 pixels
    areas = turned[1::2, 3].sum((1, 2))
    assert torch.allclose(areas, x[1, 3].sum().expand(16), rtol=0.08)
    vertical = turned[1::2, 3, :, int(c)].sum(1) > 10  # the bar stands upright at some angles
    assert 0 < int(vertical.sum()) < 16
    # Same generator seed -> same angles; within max_degrees = 5 the bar stays horizontal.
    assert torch.equal(
        turned, random_rotation(x.repeat(16, 1, 1, 1), 180.0, torch.Generator().manual_seed(0))
    )
    small = random_rotation(x[1:].repeat(8, 1, 1, 1), 5.0, torch.Generator().manual_seed(1))
    assert bool((small[:, 3, :, int(c)].sum(1) < 6).all())
    with pytest.raises(ValueError, match="square"):
        random_rotation(torch.zeros(1, 4, 8, 9), 10.0)


def test_gan_phases_update_and_report():
    torch.manual_seed(0)
    d = SNDiscriminator("tiny")
    unet = torch.nn.Conv2d(3, 1, 3, padding=1)
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(unet.parameters(), 4e-4, betas=(0.5, 0.999))
    real = torch.rand(4, 3, 16, 16)
    img = torch.rand(4, 3, 16, 16)
    bg = torch.rand(4, 3, 16, 16)
    alpha = torch.sigmoid(unet(img))
    fake = compose([(img, alpha)], bg)
    d_before = [p.clone() for p in d.parameters()]
    out_d = discriminator_step(d, opt_d, real, fake, step=0)
    assert set(out_d) == {"loss_d", "d_real", "d_fake"}
    assert any(not torch.equal(a, b) for a, b in zip(d_before, d.parameters(), strict=True))
    assert unet.weight.grad is None  # D phase leaves the generator alone
    d_snapshot = [p.clone() for p in d.parameters()]
    w_before = unet.weight.clone()
    out_g = generator_step(d, opt_g, fake, [alpha], area_weight=1000.0, area_target=0.25, step=0)
    assert out_g["mask_area"] == pytest.approx(alpha.mean().item(), abs=1e-6)
    assert out_g["loss_area"] == pytest.approx(
        ((alpha.mean((1, 2, 3)) - 0.25) ** 2).mean().item(), rel=1e-5
    )
    assert not torch.equal(w_before, unet.weight)
    assert all(torch.equal(a, b) for a, b in zip(d_snapshot, d.parameters(), strict=True))
    assert all(p.requires_grad for p in d.parameters())


def test_nonfinite_loss_raises():
    from maskgen.errors import NonFiniteLossError

    d = SNDiscriminator("tiny")
    opt = torch.optim.Adam(d.parameters())
    real = torch.full((2, 3, 8, 8), float("nan"))
    with pytest.raises(NonFiniteLossError):
        discriminator_step(d, opt, real, torch.rand(2, 3, 8, 8), step=3)


def test_detect_collapse_and_helpers():
    ok = [{"mask_area": 0.3, "d_real": 0.6, "d_fake": 0.4}] * 10
    assert detect_collapse(ok) is None
    empty = ok + [{"mask_area": 0.001, "d_real": 0.6, "d_fake": 0.4}] * 5
    assert "near 0" in detect_collapse(empty)
    full = [{"mask_area": 0.999}] * 5
    assert "near 1" in detect_collapse(full)
    win = [{"mask_area": 0.3, "d_real": 0.999, "d_fake": 0.001}] * 5
    assert "discriminator wins" in detect_collapse(win)
    assert detect_collapse(win[:3]) is None  # not enough ticks
    assert area_weight_at(0, 1000, 100) == 0.0
    assert area_weight_at(50, 1000, 100) == 500.0
    assert area_weight_at(500, 1000, 100) == 1000.0
    assert area_weight_at(0, 1000, 0) == 1000.0
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    ema_update(a, b, 0.0)
    assert torch.equal(a.weight, b.weight)
