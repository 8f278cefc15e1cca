"""``maskgen data reshape-cases``: exact re-shape ground truth for a built-in scenes folder.

For every instance the rule of :func:`maskgen.data.reshape_cases.reshape_cases` selects (truly
unoccluded, off the border, apart from other shapes) and every ``--kinds`` kind, writes into
``--out``:

- ``targets/case_NNNN.png``: the scene with that instance re-shaped, rendered exactly;
- ``cases.json``: ``{"cases": [{"case_id", "image_id", "file_name", "ann_id", "kind",
  "params", "rigid", "transform" (2 x 3 forward map or null), "target", "visible": RLE,
  "new_mask": RLE, "new_visible": RLE}, ...], "info": {...}}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskgen.errors import MaskgenError


def add_reshape_cases_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``reshape-cases`` to the ``data`` group."""
    from maskgen.data.reshape_cases import KINDS

    p = sub.add_parser(
        "reshape-cases",
        help="re-shape ground truth for built-in scenes: instances given new shapes, rendered exactly",
        description=(
            "Re-draw a built-in scenes split from its seed and, for every unoccluded instance "
            "away from the border and from other shapes, give it new shapes (another shape of "
            "its class, a thin-plate deformation, a scale, a rotation, a flip) and render the "
            "scene with its own material in the new shape (cases.json, targets/)."
        ),
    )
    p.add_argument("--scenes", required=True, help="a folder written by 'maskgen data scenes'")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--kinds", default=",".join(KINDS),
        help="comma-separated case kinds (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the new shapes (default 0)")
    p.add_argument("--max-cases", type=int, default=None, help="stop after this many cases")
    p.add_argument("--force", action="store_true", help="overwrite files in --out")
    p.set_defaults(func=run_reshape_cases)


def run_reshape_cases(args: argparse.Namespace) -> int:
    from maskgen.cli.amodal_edit import check_out_dir
    from maskgen.core.io import write_image, write_json
    from maskgen.core.rle import encode_rle
    from maskgen.data.reshape_cases import KINDS, reshape_cases

    scenes, out = Path(args.scenes), Path(args.out)
    if not (scenes / "summary.json").is_file():
        raise MaskgenError(f"{scenes}: not a scenes folder (no summary.json)")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise MaskgenError(
            f"--kinds {args.kinds}: expected a comma-separated subset of {','.join(KINDS)}"
        )
    from maskgen.data.shapes import SPLITS

    if args.split not in SPLITS:
        raise MaskgenError(f"--split {args.split}: expected one of {', '.join(SPLITS)}")
    if args.max_cases is not None and args.max_cases < 1:
        raise MaskgenError(f"--max-cases {args.max_cases}: must be at least 1")
    check_out_dir(out, args.force)
    cases = reshape_cases(scenes, args.split, kinds, seed=args.seed, max_cases=args.max_cases)
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
                "ann_id": c.ann_id,
                "kind": c.kind,
                "params": c.params,
                "rigid": c.rigid,
                "transform": None if c.transform is None else c.transform.tolist(),
                "target": name,
                "visible": encode_rle(c.visible),
                "new_mask": encode_rle(c.new_mask),
                "new_visible": encode_rle(c.new_visible),
            }
        )
    info = {
        "scenes": str(scenes),
        "split": args.split,
        "kinds": kinds,
        "seed": args.seed,
        "rule": "annotated instances with visible == amodal, off the border, >= 1 px from "
        "every other drawn shape; one case per kind",
    }
    write_json(out / "cases.json", {"cases": entries, "info": info}, indent=None)
    print(f"{len(entries)} re-shape cases of {scenes} ({args.split}) -> {out}")
    return 0
