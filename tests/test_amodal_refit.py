"""The latent refit (maskgen.amodal.refit): what it optimises, that it is switchable, and that the
CLI records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _amodal_tiny import (
    TINY,
    assert_one_line_error,
    run_cli,
    save_tiny_model,
    tiny_scenes,
)
from maskgen.amodal.io import SHIPPED_MODEL
from maskgen.amodal.model import AmodalVAE
from maskgen.amodal.predictor import AmodalPredictor, ImageInput
from maskgen.amodal.refit import RefitConfig, evidence_crops, refit_latents


def _objective(model, z, mu, sigma, v, w, cfg: RefitConfig) -> float:  # noqa: ANN001
    """The refit's loss L(z) (module docstring), written out independently."""
    with torch.no_grad():
        zt = torch.from_numpy(z)
        logits = model.decode(zt)
        fit = F.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(v)[:, None], weight=torch.from_numpy(w)[:, None],
            reduction="sum",
        )  # fmt: skip
        post = (((zt - torch.from_numpy(mu)) / torch.from_numpy(sigma)) ** 2).sum()
        return float(fit + 0.5 * cfg.refit_posterior * post + 0.5 * cfg.refit_prior * (zt**2).sum())


def test_refit_lowers_its_objective_and_zero_steps_is_the_identity() -> None:
    torch.manual_seed(0)
    model = AmodalVAE(TINY).eval()
    rng = np.random.default_rng(0)
    n, d, s = 3, TINY.latent_dim, TINY.crop_size
    mu = rng.standard_normal((n, d)).astype(np.float32)
    sigma = np.full((n, d), 0.5, np.float32)
    v = np.zeros((n, s, s), np.float32)
    v[:, 4:20, 4:20] = 1.0
    w = np.ones((n, s, s), np.float32)
    w[:, 14:, 14:] = 0.0  # unknown cells
    cfg = RefitConfig()
    z = refit_latents(model, mu, sigma, v, w, cfg)
    assert z.shape == mu.shape and not np.allclose(z, mu)
    assert _objective(model, z, mu, sigma, v, w, cfg) < _objective(model, mu, mu, sigma, v, w, cfg)
    # the model's weights are left untouched and trainable
    assert all(p.requires_grad for p in model.parameters())
    off = RefitConfig(refit_steps=0)
    np.testing.assert_array_equal(refit_latents(model, mu, sigma, v, w, off), mu)


def test_evidence_crops_weights() -> None:
    """Known cells: the instance's own pixels and visible background; others' pixels and the
    outside of the image are unknown (weight 0)."""
    vm = np.zeros((2, 20, 20), bool)
    vm[0, 5:15, 5:10] = True
    vm[1, 5:15, 10:15] = True
    box = np.array([[0.0, 0.0, 20.0, 20.0], [-20.0, 0.0, 20.0, 20.0]])
    v, w = evidence_crops(vm, np.array([0, 0]), box, 20)
    assert v[0, 10, 7] == 1 and w[0, 10, 7] == 1  # own pixel
    assert v[0, 10, 12] == 0 and w[0, 10, 12] == 0  # under instance 1: unknown
    assert v[0, 2, 2] == 0 and w[0, 2, 2] == 1  # visible background
    assert w[1, 10, 2] == 0  # outside the image (x < 0): unknown


def test_refit_is_per_instance_and_switchable(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "tiny", seed=1, threshold=0.3)
    m = np.zeros((2, 40, 40), bool)
    m[0, 10:30, 10:30] = True
    m[1, 5:35, 22:28] = True
    m[0] &= ~m[1]
    pred = AmodalPredictor.from_folder(folder, refit=RefitConfig())
    assert pred.refit == RefitConfig()
    a = pred.complete_image(m)
    both = list(pred.complete_images([ImageInput(m), ImageInput(m[::-1].copy())]))
    np.testing.assert_allclose(a[0].mu, both[0][0].mu, atol=1e-4)  # batch-independent
    off = AmodalPredictor.from_folder(folder, refit=RefitConfig(refit_steps=0))
    assert off.refit is None and AmodalPredictor.from_folder(folder).refit is None  # default off
    b = off.complete_image(m)
    assert not np.allclose(a[0].mu, b[0].mu)


def test_shipped_model_refit_explains_the_evidence_better() -> None:
    """On a square hidden by a bar, the refitted mode is at least as consistent with the visible
    evidence (the known-pixel IoU) as q2's mode."""
    m = np.zeros((2, 40, 40), bool)
    m[0, 10:30, 10:30] = True
    m[1, 5:35, 22:28] = True
    m[0] &= ~m[1]
    on = AmodalPredictor.from_folder(SHIPPED_MODEL, refit=RefitConfig()).complete_image(m)
    off = AmodalPredictor.from_folder(SHIPPED_MODEL).complete_image(m)
    assert on[0].consistency >= off[0].consistency - 0.02
    assert on[0].amodal_mask[12:28, 22:28].mean() > 0.3  # still completed under the bar


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes") / "s", num_test=2, seed=4)


def test_cli_flags_are_recorded(
    tmp_path: Path, scenes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "amodal", "complete", "--model", str(SHIPPED_MODEL),
        "--masks", str(scenes / "annotations/test_coco.json"),
        "--images", str(scenes / "images/test"),
    ]  # fmt: skip
    on_args = ["--refit-steps", "20", "--refit-prior", "0.5"]
    rc, _, err = run_cli([*base, "--out", str(tmp_path / "on.json"), *on_args], capsys)
    assert rc == 0, err
    info = json.loads((tmp_path / "on.json").read_text())["info"]
    assert info["latent_refit"]["steps"] == 20
    assert info["latent_refit"]["prior_weight"] == 0.5
    rc, _, err = run_cli([*base, "--out", str(tmp_path / "off.json")], capsys)  # off by default
    assert rc == 0, err
    off = json.loads((tmp_path / "off.json").read_text())
    assert off["info"]["latent_refit"] == "off"
    on = json.loads((tmp_path / "on.json").read_text())
    assert [a["segmentation"] for a in on["annotations"]] != [
        a["segmentation"] for a in off["annotations"]
    ]
    # bad values: one line, exit 2, nothing written
    rc, _, err = run_cli(
        [*base, "--out", str(tmp_path / "bad.json"), "--refit-steps", "-1"], capsys
    )
    assert_one_line_error(rc, err, "--refit-steps")
    assert not (tmp_path / "bad.json").exists()


def test_edit_cli_refits_by_default(
    tmp_path: Path, scenes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``amodal edit`` refits unless ``--refit-steps 0``; masks.json says which."""
    anns = json.loads((scenes / "annotations/test_coco.json").read_text())
    im = anns["images"][0]
    ids = [a["id"] for a in anns["annotations"] if a["image_id"] == im["id"]]
    base = [
        "amodal", "edit", "--model", str(SHIPPED_MODEL),
        "--masks", str(scenes / "annotations/test_coco.json"),
        "--images", str(scenes / "images/test"), "--image", str(im["id"]), "--erase", str(ids[0]),
    ]  # fmt: skip
    rc, _, err = run_cli([*base, "--out", str(tmp_path / "on")], capsys)
    assert rc == 0, err
    info = json.loads((tmp_path / "on/masks.json").read_text())["info"]
    assert info["latent_refit"]["steps"] == RefitConfig().refit_steps
    rc, _, err = run_cli([*base, "--out", str(tmp_path / "off"), "--refit-steps", "0"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "off/masks.json").read_text())["info"]["latent_refit"] == "off"


def test_revealable_mask_asks_more_samples_of_a_refitted_completion() -> None:
    from maskgen.amodal.predictor import Completion
    from maskgen.editing.erase import REVEAL_SHARE, REVEAL_SHARE_REFIT, revealable_mask

    assert REVEAL_SHARE < REVEAL_SHARE_REFIT
    n = 8
    k = int(np.ceil(REVEAL_SHARE * n))  # enough samples for the plain share, too few when refitted
    assert k / n < REVEAL_SHARE_REFIT
    mode = np.zeros((4, 4), bool)
    mode[0, 0] = True
    samples = np.zeros((n, 4, 4), bool)
    samples[:k, 2, 2] = True

    def comp(refitted: bool) -> Completion:
        z = np.zeros(2, np.float32)
        return Completion(
            (4, 4), (0, 0, 4, 4), mode, mode, None, samples, np.zeros(n), np.zeros(4),
            np.zeros(4), "predicted", 0.0, 1.0, z, z, refitted=refitted,
        )  # fmt: skip

    assert revealable_mask(comp(False))[2, 2] and revealable_mask(comp(False))[0, 0]
    assert not revealable_mask(comp(True))[2, 2] and revealable_mask(comp(True))[0, 0]
