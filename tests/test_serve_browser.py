"""``maskgen serve`` in a real browser: headless Chromium driven by Playwright.

The server runs on uvicorn in a thread on a free port. The test loads the page (the built-in
scene), selects the dog, erases it, drags the elephant, undoes the move, exports the COCO JSON
through the page's download link, and checks the JSON and the canvas screenshots (no dog pixels
left after the erase; the elephant's pixels moved by the drag).

Chromium: ``$MASKGEN_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on the PATH (Debian's
``chromium`` package; ``.ci/run`` installs it). Without one, or without the ``playwright``
package, the test is skipped with the reason. Screenshots are kept in ``$MASKGEN_ARTIFACTS/serve``
(default ``test-artifacts/serve`` in the repository); ``MASKGEN_UPDATE_FIGURES=1`` also writes
the README's ``docs/figures/serve_after_erase.png`` and ``serve_after_move.png``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _serve import make_app

REPO = Path(__file__).resolve().parent.parent
DOG, ELEPHANT, SHEEP = 213, 212, 211


def chromium_path() -> str | None:
    env = os.environ.get("MASKGEN_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = chromium_path()
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium executable (install Debian's 'chromium' or set MASKGEN_CHROMIUM)",
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)


def artifacts_dir() -> Path:
    root = Path(os.environ.get("MASKGEN_ARTIFACTS", REPO / "test-artifacts"))
    out = root / "serve"
    out.mkdir(parents=True, exist_ok=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server():
    import uvicorn

    port = free_port()
    app = make_app(port=port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


def interior_point(instance_id: int) -> tuple[float, float]:
    """The pixel of an example instance's visible mask farthest from its border."""
    import cv2

    from maskgen.core.rle import decode_segmentation
    from maskgen.serve.example import EXAMPLE_MASKS

    ann = next(
        a for a in json.loads(EXAMPLE_MASKS.read_text())["annotations"] if a["id"] == instance_id
    )
    m = decode_segmentation(ann["segmentation"], 256, 256).astype(np.uint8)
    dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    return float(x) + 0.5, float(y) + 0.5


def page_point(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image pixel (x, y) on the canvas."""
    box = page.locator("#canvas").bounding_box()
    border = 1
    w = box["width"] - 2 * border
    h = box["height"] - 2 * border
    return box["x"] + border + x * w / 256, box["y"] + border + y * h / 256


def canvas_pixels(page, path: Path) -> np.ndarray:
    data = page.locator("#canvas").screenshot(path=str(path))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def pink(img: np.ndarray) -> int:
    """Pixels of the dog's colour (saturated pink-red)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((r > 190) & (g < 110) & (b > 60) & (b < 150)).sum())


def wait_version(page, v: int) -> None:
    page.wait_for_selector(f'body[data-version="{v}"][data-busy="0"]', timeout=20_000)


def test_edit_in_browser(server, browser, tmp_path):
    out = artifacts_dir()
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server + "/")
    page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
    state = page.evaluate("window.maskgen.state")
    assert sorted(i["id"] for i in state["instances"]) == [SHEEP, ELEPHANT, DOG]
    assert page.locator("#layers li").count() == 3
    before = canvas_pixels(page, out / "0_loaded.png")
    assert pink(before) > 500

    # Hover, then select the dog: its details and candidates (with consistency) show.
    page.mouse.move(*page_point(page, *interior_point(DOG)))
    page.mouse.down()
    page.mouse.up()
    page.wait_for_function(
        f"() => window.maskgen.selected === {DOG} && window.maskgen.detail !== null"
    )
    assert f"#{DOG}" in page.inner_text("#details")
    assert page.locator("#candidates li").count() >= 2
    assert "consistency" in page.inner_text("#candidates")
    assert page.locator("#reshape-btn").is_enabled()
    page.screenshot(path=str(out / "1_selected.png"))

    # Erase it.
    page.click("#erase-btn")
    wait_version(page, 1)
    state = page.evaluate("window.maskgen.state")
    assert DOG not in [i["id"] for i in state["instances"]]
    erased = canvas_pixels(page, out / "2_after_erase.png")
    assert pink(erased) < 0.02 * pink(before)
    page.screenshot(path=str(out / "2_after_erase_page.png"))

    # Drag the elephant 30 image pixels right and 20 up.
    ex, ey = interior_point(ELEPHANT)
    page.mouse.move(*page_point(page, ex, ey))
    page.mouse.down()
    for t in np.linspace(0, 1, 6)[1:]:
        page.mouse.move(*page_point(page, ex + 30 * t, ey - 20 * t))
    page.mouse.up()
    wait_version(page, 2)
    state = page.evaluate("window.maskgen.state")
    ele = next(i for i in state["instances"] if i["id"] == ELEPHANT)
    assert abs(ele["dx"] - 30) <= 1 and abs(ele["dy"] + 20) <= 1, ele
    moved = canvas_pixels(page, out / "3_after_move.png")
    assert (np.abs(moved - erased).sum(axis=2) > 60).sum() > 500
    page.screenshot(path=str(out / "3_after_move_page.png"))
    if os.environ.get("MASKGEN_UPDATE_FIGURES") == "1":
        shutil.copy(out / "2_after_erase_page.png", REPO / "docs/figures/serve_after_erase.png")
        shutil.copy(out / "3_after_move_page.png", REPO / "docs/figures/serve_after_move.png")

    # Undo the move: the canvas is the erased scene again.
    page.click("#undo-btn")
    wait_version(page, 3)
    page.mouse.click(*page_point(page, 128, 20))  # on the background: deselects
    page.wait_for_function("() => window.maskgen.selected === null")
    undone = canvas_pixels(page, out / "4_after_undo.png")
    ele = next(i for i in page.evaluate("window.maskgen.state")["instances"] if i["id"] == ELEPHANT)
    assert (ele["dx"], ele["dy"]) == (0, 0)
    assert (np.abs(undone - erased).sum(axis=2) > 60).sum() < 50

    # Export through the page's link.
    with page.expect_download() as dl:
        page.click("#dl-coco")
    path = tmp_path / "export.json"
    dl.value.save_as(path)
    shutil.copy(path, out / "export_coco.json")
    ex_json = json.loads(path.read_text())
    anns = {a["id"]: a for a in ex_json["annotations"]}
    assert set(anns) == {SHEEP, ELEPHANT}
    assert anns[SHEEP]["area"] > anns[SHEEP]["visible_area"] * 0.9
    assert ex_json["info"]["edits"] == 1  # the erase; the move was undone
    assert not errors, errors


def test_candidates_box_keys_and_drawing_in_browser(server, browser, tmp_path):
    import zipfile

    from maskgen.serve.example import EXAMPLE_IMAGE

    out = artifacts_dir()
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector('body[data-ready="1"]', timeout=30_000)

    # Select the sheep from the layer list, then use its posterior sample 2.
    page.click(f'#layers li[data-id="{SHEEP}"]')
    page.wait_for_function(f"() => window.maskgen.detail && window.maskgen.detail.id === {SHEEP}")
    page.click('#candidates li[data-k="2"]')
    wait_version(page, 1)
    state = page.evaluate("window.maskgen.state")
    assert next(i for i in state["instances"] if i["id"] == SHEEP)["choice"] == 2
    assert page.locator('#candidates li.selected[data-k="2"]').count() == 1

    # Draw its amodal box.
    page.click("#box-btn")
    page.mouse.move(*page_point(page, 140, 125))
    page.mouse.down()
    page.mouse.move(*page_point(page, 200, 170))
    page.mouse.move(*page_point(page, 252, 212))
    page.mouse.up()
    wait_version(page, 2)
    sheep = next(i for i in page.evaluate("window.maskgen.state")["instances"] if i["id"] == SHEEP)
    assert sheep["box_source"] == "supplied"
    assert abs(sheep["amodal_box"][0] - 140) <= 1 and abs(sheep["amodal_box"][3] - 212) <= 1

    # The uncertainty overlay, then Delete erases and Ctrl+Z brings it back.
    page.check("#show-unc")
    page.wait_for_function("() => window.maskgen.unc !== null")
    page.screenshot(path=str(out / "5_box_and_uncertainty.png"))
    page.locator("#canvas").focus()
    page.keyboard.press("Delete")
    wait_version(page, 3)
    assert SHEEP not in [i["id"] for i in page.evaluate("window.maskgen.state")["instances"]]
    page.keyboard.press("Control+z")
    wait_version(page, 4)
    assert SHEEP in [i["id"] for i in page.evaluate("window.maskgen.state")["instances"]]

    # The layers zip through the page's link.
    with page.expect_download() as dl:
        page.click("#dl-zip")
    dl.value.save_as(tmp_path / "layers.zip")
    names = zipfile.ZipFile(tmp_path / "layers.zip").namelist()
    assert "background.png" in names and len([n for n in names if n.startswith("layer_")]) == 3

    # An image alone: outline two objects, then edit.
    old = page.evaluate("window.maskgen.state.scene_id")
    page.set_input_files("#image-file", str(EXAMPLE_IMAGE))
    page.click("#draw-btn")
    page.wait_for_selector("#draw-tools", state="visible")
    for poly in (
        [(22, 186), (86, 186), (86, 236), (22, 236)],
        [(190, 100), (256, 100), (256, 200), (190, 200)],
    ):
        for x, y in poly:
            page.mouse.click(*page_point(page, x, y))
        page.keyboard.press("Enter")
    page.screenshot(path=str(out / "6_drawing.png"))
    page.click("#draw-done-btn")
    page.wait_for_function(
        f"() => window.maskgen.state && window.maskgen.state.scene_id !== '{old}'", timeout=30_000
    )
    state = page.evaluate("window.maskgen.state")
    assert sorted(i["id"] for i in state["instances"]) == [1, 2]
    assert not page.locator("#draw-tools").is_visible()
    page.screenshot(path=str(out / "7_drawn_scene.png"))
    assert not errors, errors
