"""``maskgen data edit-cases``: exact editing ground truth for a built-in scenes folder.

For every annotated occluder hiding at least ``--min-hidden`` pixels of annotated instances
(:func:`maskgen.data.edit_cases.edit_cases`), writes into ``--out``:

- ``targets/case_NNNN.png``: the scene rendered without that instance;
- ``cases.json``: ``{"cases": [{"case_id", "image_id", "file_name", "erase_id", "target",
  "revealed": RLE, "revealed_object": RLE, "new_visible": [{"id", "segmentation": RLE}, ...]},
  ...], "info": {...}}`` -- ``new_visible`` holds every remaining annotated instance's true
  visible mask after the erase.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskgen.errors import MaskgenError


def add_edit_cases_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``edit-cases`` to the ``data`` group."""
    from maskgen.data.edit_cases import DEFAULT_MIN_HIDDEN

    p = sub.add_parser(
        "edit-cases",
        help="editing ground truth for built-in scenes: each occluder erased, rendered exactly",
        description=(
            "Re-draw a built-in scenes split from its seed and, for every annotated instance "
            "that hides at least --min-hidden px of annotated instances, write the scene "
            "rendered without it and the true new visible masks (cases.json, targets/)."
        ),
    )
    p.add_argument("--scenes", required=True, help="a folder written by 'maskgen data scenes'")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--min-hidden", type=int, default=DEFAULT_MIN_HIDDEN,
        help="pixels an occluder must hide to make a case (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite files in --out")
    p.set_defaults(func=run_edit_cases)


def run_edit_cases(args: argparse.Namespace) -> int:
    from maskgen.cli.amodal_edit import check_out_dir
    from maskgen.core.io import write_image, write_json
    from maskgen.core.rle import encode_rle
    from maskgen.data.edit_cases import edit_cases

    scenes, out = Path(args.scenes), Path(args.out)
    if not (scenes / "summary.json").is_file():
        raise MaskgenError(f"{scenes}: not a scenes folder (no summary.json)")
    if args.min_hidden < 1:
        raise MaskgenError(f"--min-hidden {args.min_hidden}: must be at least 1")
    check_out_dir(out, args.force)
    cases = list(edit_cases(scenes, args.split, min_hidden=args.min_hidden))
    entries = []
    (out / "targets").mkdir(parents=True, exist_ok=True)
    for c in cases:
        name = f"targets/case_{c.case_id:04d}.png"
        write_image(out / name, c.target)
        entries.append(
            {
                "case_id": c.case_id,
                "image_id": c.image_id,
                "file_name": c.file_name,
                "erase_id": c.erase_id,
                "target": name,
                "revealed": encode_rle(c.revealed),
                "revealed_object": encode_rle(c.revealed_object),
                "new_visible": [
                    {"id": i, "segmentation": encode_rle(m)}
                    for i, m in sorted(c.new_visible.items())
                ],
            }
        )
    info = {
        "scenes": str(scenes),
        "split": args.split,
        "rule": f"every annotated instance hiding >= {args.min_hidden} px of annotated instances",
    }
    write_json(out / "cases.json", {"cases": entries, "info": info}, indent=None)
    print(f"{len(entries)} edit cases of {scenes} ({args.split}) -> {out}")
    return 0
