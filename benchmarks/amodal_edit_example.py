"""Scene-editing example: erase one instance of a built-in test scene, score what was revealed.

    python benchmarks/amodal_edit_example.py [--image 000021.png] [--erase 213] [--back 211]
                                             [--scenes DIR] [--figure PATH] [--no-record]

Runs ``maskgen amodal edit`` (shipped model) on one image of the built-in scenes' test split,
erasing instance ``--erase``, and scores the pixels the edit gave to the instance behind it
(``--back``) against the ground-truth amodal mask of ``test_kins2020.json``: the share of them that
lie in its GT amodal mask, the share of what the erased instance hid of it that they cover, and
its amodal IoU before (visible mask) and after (completed mask). Copies ``before_after.png`` to
``--figure`` (the README's example) and records section ``amodal-edit-example`` of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _decode(segm: dict) -> np.ndarray:
    from maskgen.core.rle import decode_segmentation

    h, w = segm["size"]
    return decode_segmentation(segm, h, w).astype(bool)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", default="benchmarks/data/scenes")
    p.add_argument("--image", default="000021.png")
    p.add_argument("--erase", type=int, default=213)
    p.add_argument("--back", type=int, default=211, help="the instance the erased one hides")
    p.add_argument("--figure", default="docs/figures/amodal_edit_example.png")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)

    scenes = REPO / args.scenes
    out = Path(tempfile.mkdtemp(prefix="edit-example-")) / "edit"
    cmd = [
        "maskgen", "amodal", "edit",
        "--masks", f"{args.scenes}/annotations/test_coco.json",
        "--images", f"{args.scenes}/images/test",
        "--image", args.image, "--erase", str(args.erase), "--out", str(out),
    ]  # fmt: skip
    subprocess.run([sys.executable, "-m", "maskgen", *cmd[1:]], check=True, cwd=REPO)

    gt = json.loads((scenes / "annotations" / "test_kins2020.json").read_text())
    by_id = {a["id"]: a for a in gt["annotations"]}
    res = {a["id"]: a for a in json.loads((out / "masks.json").read_text())["annotations"]}
    back, erased = by_id[args.back], by_id[args.erase]
    old_vis, amodal_gt = _decode(back["i_segm"]), _decode(back["a_segm"])
    new_vis = _decode(res[args.back]["visible_segmentation"])
    pred_amodal = _decode(res[args.back]["segmentation"])
    given = new_vis & ~old_vis
    hidden = amodal_gt & _decode(erased["i_segm"])

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / max((a | b).sum(), 1))

    info = json.loads((out / "masks.json").read_text())["info"]["edit"]
    lines = [
        f"`{' '.join(cmd[:-1])} OUT` on the shipped model: instance {args.erase} erased from "
        f"`{args.image}`, instance {args.back} is behind it.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| pixels revealed (erased mask minus the remaining visible masks) | {info['revealed_pixels']:,} |",
        f"| given to instance {args.back} | {int(given.sum()):,} |",
        f"| ... of which inside its GT amodal mask | {100 * (given & amodal_gt).sum() / max(given.sum(), 1):.1f} % |",
        f"| share of what the erased instance hid of it that they cover | {100 * (given & hidden).sum() / max(hidden.sum(), 1):.1f} % |",
        f"| its amodal IoU: visible mask before / completed mask | {iou(old_vis, amodal_gt):.3f} / {iou(pred_amodal, amodal_gt):.3f} |",
        "",
        f"![before / after](../{args.figure})",
    ]
    shutil.copyfile(out / "before_after.png", REPO / args.figure)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _record import publish

    publish(
        "amodal-edit-example",
        lines,
        "python benchmarks/amodal_edit_example.py",
        note=None,
        record=not args.no_record,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
