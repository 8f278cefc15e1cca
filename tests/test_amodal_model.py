"""Amodal-VAE networks, KL schedule and strict model folders (tiny configs, CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from maskgen.amodal.io import SHIPPED_MODEL, load_amodal_model, save_amodal_model
from maskgen.amodal.model import (
    AmodalVAE,
    AmodalVAEConfig,
    extensions_to_relative_box,
    fuse_for_inference,
    kl_divergence,
    relative_box_to_extensions,
)
from maskgen.amodal.training import kl_weight
from maskgen.errors import MaskgenError

TINY = AmodalVAEConfig(widths=(8, 8), fc_dim=32, box_widths=(4, 8, 8), box_fc_dim=16)


def _randomise_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def test_contract_shapes_and_defaults() -> None:
    cfg = AmodalVAEConfig()
    assert cfg.crop_size == 28 and cfg.latent_dim == 64 and cfg.res_blocks == 2  # paper §3.2
    m = AmodalVAE(TINY).eval()
    y = (torch.rand(5, 1, 28, 28) > 0.5).float()
    mu, logvar = m.encode_full(y)
    assert mu.shape == (5, 64) and logvar.shape == (5, 64)
    mu2, lv2 = m.encode_partial(y)
    assert mu2.shape == (5, 64) and not torch.allclose(mu, mu2)  # own weights
    logits = m.decode(mu)
    assert logits.shape == (5, 1, 28, 28) and logits.is_contiguous()
    box = m.predict_amodal_box(y)
    assert box.shape == (5, 4)
    assert (box[:, :2] <= 0).all() and (box[:, 2:] >= 1).all()  # contains the visible box
    ctx = torch.rand(5, 2, TINY.box_context_size, TINY.box_context_size)
    wh = torch.tensor([[10.0, 20.0]] * 5)
    box2 = m.predict_amodal_box(y, context=ctx, vis_wh=wh)
    assert box2.shape == (5, 4) and (box2[:, :2] <= 0).all()
    # batch of one works (BatchNorm1d in eval mode)
    assert m.decode(m.encode_partial(y[:1])[0]).shape == (1, 1, 28, 28)


def test_config_round_trip_and_unknown_keys() -> None:
    d = TINY.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert AmodalVAEConfig.from_dict(d) == TINY
    with pytest.raises(ValueError, match="bogus"):
        AmodalVAEConfig.from_dict({**d, "bogus": 1})


def test_box_extension_round_trip() -> None:
    aspect = torch.tensor([[1.0, 0.5], [0.25, 1.0]])
    ext = torch.tensor([[0.1, 0.2, 0.3, 0.0], [0.0, 0.5, 1.0, 0.2]])
    rel = extensions_to_relative_box(ext, aspect)
    # left extension of 0.1 max-side units on a box of width 1.0 max-side -> -0.1
    assert rel[0, 0].item() == pytest.approx(-0.1)
    assert rel[0, 1].item() == pytest.approx(-0.4)  # 0.2 / 0.5
    assert torch.allclose(relative_box_to_extensions(rel, aspect), ext, atol=1e-6)


def test_box_head_keeps_learning_when_its_output_is_below_zero() -> None:
    # Regression: a softplus output pushed far below 0 by the L1 loss got ~1e-9 gradient and the
    # head predicted "no extension" for every input. The raw output keeps the L1 gradient and
    # predict_amodal_box clamps at 0 (the amodal box always contains the visible box).
    torch.manual_seed(0)
    model = AmodalVAE(TINY)
    model.box_head.fc[-1].bias.data.fill_(-20.0)
    s = TINY.box_context_size
    ctx, aspect = torch.rand(4, 2, s, s), torch.ones(4, 2)
    ext = model.predict_box_extensions(ctx, aspect)
    (ext - 0.2).abs().sum(1).mean().backward()
    assert model.box_head.fc[-1].bias.grad.abs().min() > 0.5
    model.eval()
    with torch.no_grad():
        rel = model.predict_amodal_box(torch.zeros(4, 1, 28, 28), context=ctx, vis_wh=aspect)
    assert torch.equal(rel, torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(4, 4))


def test_fused_model_matches_eval_model() -> None:
    m = AmodalVAE(TINY)
    _randomise_bn(m)
    m.eval()
    f = fuse_for_inference(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in f.decoder.modules())
    y = (torch.rand(16, 1, 28, 28) > 0.5).float()
    with torch.inference_mode():
        a = m.decode(m.encode_partial(y)[0])
        b = f.decode(f.encode_partial(y)[0])
        ba = m.predict_amodal_box(y)
        bb = f.predict_amodal_box(y)
    assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(ba, bb, atol=1e-4)


def test_kl_divergence_standard_normal_is_zero() -> None:
    mu = torch.zeros(3, 64)
    assert torch.allclose(kl_divergence(mu, torch.zeros(3, 64)), torch.zeros(3))
    # KL(N(1, 1) || N(0, 1)) = 0.5 per latent
    assert kl_divergence(torch.ones(1, 4), torch.zeros(1, 4)).item() == pytest.approx(2.0)


def test_kl_weight_matches_supplementary_eq1_by_hand() -> None:
    # λ(t) = λf − (λf − λs)·α^max(0, t − t_begin), λf 0.5, λs 0.01, α 0.9995, t_begin 2000
    assert kl_weight(0) == pytest.approx(0.01)
    assert kl_weight(2000) == pytest.approx(0.01)
    assert kl_weight(3000) == pytest.approx(0.5 - 0.49 * 0.9995**1000)  # 0.5 - 0.49*0.6064
    assert kl_weight(3000) == pytest.approx(0.2028, abs=1e-3)
    assert kl_weight(10_000) == pytest.approx(0.5 - 0.49 * 0.9995**8000, rel=1e-9)
    assert kl_weight(10**7) == pytest.approx(0.5)
    # the schedule stretch: λ at s*t equals the paper's λ at t
    assert kl_weight(1500, schedule_scale=0.5) == pytest.approx(kl_weight(3000))
    with pytest.raises(ValueError):
        kl_weight(10, schedule_scale=0)


def test_model_folder_round_trip(tmp_path) -> None:
    m = AmodalVAE(TINY)
    _randomise_bn(m)
    m.save_folder(tmp_path / "m", threshold=0.15, training={"note": "test"})
    loaded = AmodalVAE.from_folder(tmp_path / "m")
    header, t = loaded.folder_config, loaded.threshold
    assert t == pytest.approx(0.15) and not loaded.training
    assert header["kind"] == "amodal-vae" and header["training"] == {"note": "test"}
    assert loaded.config == TINY
    y = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(
            m.eval().decode(m.encode_partial(y)[0]), loaded.decode(loaded.encode_partial(y)[0])
        )


def _edit_config(folder, fn) -> None:
    p = folder / "config.json"
    d = json.loads(p.read_text())
    fn(d)
    p.write_text(json.dumps(d))


def test_strict_loading_errors(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    m = AmodalVAE(TINY)
    folder = tmp_path / "m"
    m.save_folder(folder, threshold=0.1)
    w = folder / "model.safetensors"
    good = w.read_bytes()

    # missing key
    sd = load_file(str(w))
    sd.pop("decoder.conv.2.weight")
    save_file(sd, str(w))
    with pytest.raises(MaskgenError, match=r"missing keys decoder\.conv\.2\.weight"):
        AmodalVAE.from_folder(folder)
    # unexpected key
    sd = load_file_bytes(good)
    sd["extra.weight"] = torch.zeros(2)
    save_file(sd, str(w))
    with pytest.raises(MaskgenError, match="unexpected keys extra.weight"):
        AmodalVAE.from_folder(folder)
    # config says another width than the weights have
    w.write_bytes(good)
    _edit_config(folder, lambda d: d["config"].__setitem__("fc_dim", 64))
    with pytest.raises(MaskgenError, match="wrong shapes"):
        AmodalVAE.from_folder(folder)
    _edit_config(folder, lambda d: d["config"].__setitem__("fc_dim", 32))
    # corrupt safetensors
    w.write_bytes(good[:100])
    with pytest.raises(MaskgenError, match="corrupt safetensors"):
        AmodalVAE.from_folder(folder)
    # missing weights file
    w.unlink()
    with pytest.raises(MaskgenError, match="model.safetensors: file not found"):
        AmodalVAE.from_folder(folder)
    w.write_bytes(good)
    # bad threshold / unknown config key / another kind / no folder
    _edit_config(folder, lambda d: d.__setitem__("threshold", 1.5))
    with pytest.raises(MaskgenError, match="threshold"):
        AmodalVAE.from_folder(folder)
    _edit_config(
        folder, lambda d: (d.__setitem__("threshold", 0.1), d["config"].__setitem__("bogus", 1))
    )
    with pytest.raises(MaskgenError, match="bogus"):
        AmodalVAE.from_folder(folder)
    _edit_config(
        folder, lambda d: (d["config"].pop("bogus"), d.__setitem__("kind", "segment-unet"))
    )
    with pytest.raises(MaskgenError, match="expected amodal-vae"):
        AmodalVAE.from_folder(folder)
    with pytest.raises(MaskgenError, match="not found"):
        AmodalVAE.from_folder(tmp_path / "nowhere")
    # every message is one line
    try:
        AmodalVAE.from_folder(folder)
    except MaskgenError as e:
        assert "\n" not in str(e)


def load_file_bytes(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(data)


def test_shipped_model_loads_and_completes() -> None:
    model = AmodalVAE.from_folder()  # the default is the shipped model
    header, t = model.folder_config, model.threshold
    assert 0 < t < 1 and header["kind"] == "amodal-vae"
    assert (SHIPPED_MODEL / "README.md").is_file()
    size = sum(p.stat().st_size for p in SHIPPED_MODEL.iterdir())
    assert size < 8 * 2**20  # a few MB at most
    # an unoccluded disc stays a disc-sized blob (not empty, not the whole frame)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    disc = (((yy - 13.5) ** 2 + (xx - 13.5) ** 2) < 13.5**2).float()
    with torch.no_grad():
        probs = torch.sigmoid(model.decode(model.encode_partial(disc[None, None])[0]))
    assert probs.shape == (1, 1, 28, 28)
    assert 0.3 < float((probs > t).float().mean()) < 0.99


def test_thin_aliases_and_device_check(tmp_path) -> None:
    """load_amodal_model / save_amodal_model stay as thin aliases of the model API; an unusable
    device is refused before any file is read."""
    m = AmodalVAE(TINY)
    save_amodal_model(tmp_path / "m", m, TINY, 0.2)
    loaded, header, t = load_amodal_model(tmp_path / "m")
    assert t == pytest.approx(0.2) and header["config"] == TINY.to_dict()
    with pytest.raises(MaskgenError, match="--device tpu"):
        AmodalVAE.from_folder(tmp_path / "m", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MaskgenError, match="CUDA is not available"):
            AmodalVAE.from_folder(tmp_path / "m", device="cuda")
    from maskgen.amodal.predictor import AmodalPredictor

    assert AmodalPredictor.from_folder(tmp_path / "m", device=" CPU").device.type == "cpu"
    with pytest.raises(ValueError):
        m.save_folder(tmp_path / "bad", threshold=1.5)
    assert not (tmp_path / "bad").exists()
