"""The built-in example scene the editor opens on (shipped, so the server works offline).

``example/scene.png`` (256x256 RGB) and ``example/scene_coco.json`` (its visible masks, COCO) are
image ``000021.png`` of the built-in scenes' test split -- the scene of the README's "Scene
editing" example -- as ``maskgen data scenes`` draws it with the default settings (seed 0).
:func:`regenerate` rewrites both files from :mod:`maskgen.data.scenes`::

    python -m maskgen.serve.example
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent / "example"
EXAMPLE_IMAGE = EXAMPLE_DIR / "scene.png"
EXAMPLE_MASKS = EXAMPLE_DIR / "scene_coco.json"
EXAMPLE_INDEX = 21  # test image 000021.png
EXAMPLE_SPLIT = "test"


def regenerate(out_dir: Path = EXAMPLE_DIR) -> None:
    """Draw the example scene again and write ``scene.png`` and ``scene_coco.json``."""
    import numpy as np

    from maskgen.core.io import write_image
    from maskgen.data.builtin import texture_images
    from maskgen.data.coco import write_coco
    from maskgen.data.scenes import MAX_INSTANCES_PER_IMAGE, SceneConfig, annotate, render_scene
    from maskgen.data.shapes import SPLITS, load_shapes, split_shape_pools
    from maskgen.data.types import Dataset

    cfg = SceneConfig()
    shape_set = load_shapes("builtin")
    pools, _ = split_shape_pools(shape_set)
    split_index = SPLITS.index(EXAMPLE_SPLIT)
    rng = np.random.default_rng([cfg.seed, split_index, EXAMPLE_INDEX])
    scene = render_scene(rng, pools[EXAMPLE_SPLIT], cfg, list(texture_images().values()))
    rec, _ = annotate(
        scene, 1, EXAMPLE_INDEX * MAX_INSTANCES_PER_IMAGE + 1, EXAMPLE_IMAGE.name, cfg
    )
    categories = [
        {"id": i + 1, "name": n, "supercategory": "animal"}
        for i, n in enumerate(shape_set.class_names)
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_image(out_dir / EXAMPLE_IMAGE.name, scene.image)
    write_coco(Dataset([rec], categories, layout="coco"), out_dir / EXAMPLE_MASKS.name)


if __name__ == "__main__":
    regenerate()
