"""``maskgen amodal edit``: erase, move, reorder instances of an image or swap a completion for
one of its samples, showing what they hid.

The scene-editing application of Amodal-VAE (supplementary §3.3, Fig. 6). The image is decomposed
once into layers (:class:`maskgen.editing.scene.Scene`: completions, occlusion order, inpainting)
and every operation re-composites those layers. Operations run in command-line order:
``--erase ID...``, ``--move ID DX DY``, ``--front ID``, ``--back ID``, ``--sample ID K``,
``--reshape ID:KIND[=VALUE]`` (supplementary §3.4: ``sample=K``, ``prior=SEED``,
``mask=FILE.png``, ``scale=S``, ``rotate=DEG``, ``flip``; rigid kinds warp the layer, the others
re-render it with the mask-conditioned synthesizer ``--synth``, :mod:`maskgen.editing.reshape`).
Writes into ``--out``:

- ``edited.png``: the edited image;
- ``before_after.png``: the input with the edited instance(s) outlined beside the edited image
  with the newly visible object parts outlined;
- ``masks.json``: a results file (:mod:`maskgen.data.results`) with one entry per remaining
  instance: ``segmentation`` its amodal mask, plus ``visible_segmentation`` its new visible mask
  and ``revealed_area`` (pixels it gained);
- with ``--layers DIR``: the edited scene's layers (:meth:`~maskgen.editing.scene.Scene.save_layers`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from maskgen.amodal.refit import add_refit_arguments, refit_from_args
from maskgen.cli.amodal_complete import SHIPPED_MODEL, check_model_arg
from maskgen.errors import MaskgenError

OUTPUT_FILES = ("edited.png", "before_after.png", "masks.json")
ERASED_COLOUR = (0, 255, 255)  # cyan: outline of an erased instance (before)
REVEALED_COLOUR = (255, 230, 0)  # yellow: outline of an instance's revealed part (after)
MIN_FIGURE_HEIGHT = 256  # small images are enlarged (nearest neighbour) so outlines stay visible


def add_edit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``edit`` to the ``amodal`` group."""
    p = subparsers.add_parser(
        "edit",
        help="edit an image's instances (erase, move, reorder, use a sample) from its layers",
        description=(
            "Scene editing (Amodal-VAE supplementary Fig. 6): decompose one image into layers "
            "(every instance completed with Amodal-VAE, the occlusion order decided from the "
            "completions, hidden parts and the background inpainted) and apply the operations "
            "in command-line order, re-compositing the layers: --erase, --move, --front, --back, "
            "--sample. --inpainter telea (OpenCV, the default) or a learned inpainter's run."
        ),
    )
    p.add_argument(
        "--model", default=str(SHIPPED_MODEL), help="model folder (default: the shipped model)"
    )
    p.add_argument("--masks", required=True, help="visible masks JSON (COCO, KINS or COCOA)")
    p.add_argument("--images", required=True, help="folder holding the images named in the JSON")
    p.add_argument(
        "--image", required=True, metavar="ID_OR_FILE_NAME", help="the image: its id or file name"
    )
    ops = p.add_argument_group("operations (at least one; applied in command-line order)")
    ops.add_argument(
        "--erase", nargs="+", type=int, metavar="ANN_ID", action=_OpAction,
        help="annotation id(s) of the instance(s) to remove",
    )  # fmt: skip
    ops.add_argument(
        "--move", nargs=3, type=int, metavar=("ANN_ID", "DX", "DY"), action=_OpAction,
        help="move an instance by DX, DY pixels (right, down)",
    )  # fmt: skip
    ops.add_argument(
        "--front", nargs=1, type=int, metavar="ANN_ID", action=_OpAction,
        help="bring an instance in front of every other",
    )  # fmt: skip
    ops.add_argument(
        "--back", nargs=1, type=int, metavar="ANN_ID", action=_OpAction,
        help="send an instance behind every other",
    )  # fmt: skip
    ops.add_argument(
        "--sample", nargs=2, type=int, metavar=("ANN_ID", "K"), action=_OpAction,
        help="replace an instance's completion by its posterior sample K (0-based)",
    )  # fmt: skip
    ops.add_argument(
        "--reshape", nargs=1, metavar="ID:KIND[=VALUE]", action=_OpAction,
        help="give an instance a new shape: ID:sample=K (posterior sample), ID:prior=SEED "
        "(a shape from the Amodal-VAE prior), ID:mask=FILE.png (your full mask, image size), "
        "ID:scale=S, ID:rotate=DEG, ID:flip (warps of its completion); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--synth", default="builtin", metavar="MODEL",
        help="mask-conditioned synthesizer for non-rigid --reshape: 'builtin' (the shipped "
        "model, the default) or a model folder from 'maskgen synth train'",
    )  # fmt: skip
    from maskgen.engine import add_config_arguments
    from maskgen.synthesis.transfer import TextureOptions

    add_config_arguments(p.add_argument_group("synthesizer texture"), TextureOptions)
    p.add_argument(
        "--inpainter", default="telea",
        help="'telea' (OpenCV, the default), 'builtin' (the shipped learned inpainter) or a "
        "learned inpainter's run folder",
    )  # fmt: skip
    p.add_argument("--layers", default=None, metavar="DIR", help="also write the edited layers")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--force", action="store_true", help="overwrite files in --out")
    add_refit_arguments(p, on=True)
    p.set_defaults(func=run_edit)


class _OpAction(argparse.Action):
    """Appends ``(flag, values)`` to ``namespace.ops`` so operations keep command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        ops = list(getattr(namespace, "ops", None) or [])
        ops.append((option_string, list(values)))
        namespace.ops = ops
        setattr(namespace, self.dest, values)


def make_inpainter(name: str | None, device: str = "cpu"):  # noqa: ANN201
    """The inpainter named by ``--inpainter``: ``telea``, ``builtin`` (or None: the shipped
    learned inpainter) or a learned inpainter's model/run folder.

    Raises:
        MaskgenError: the folder does not exist, or no learned inpainter is installed.
    """
    from maskgen.inpainting.base import TeleaInpainter

    if name == "telea":
        return TeleaInpainter()
    try:
        from maskgen.inpainting import load_inpainter  # the learned one; absent in older trees
    except ImportError:
        raise MaskgenError(
            f"--inpainter {name}: this installation has no learned inpainter; use 'telea'"
        ) from None
    if name is not None and name != "builtin" and not Path(name).exists():
        raise MaskgenError(f"--inpainter {name}: no such run folder (or use 'telea' or 'builtin')")
    return load_inpainter(name, device)


def find_image(dataset: Any, key: str, masks_path: str) -> Any:
    """The image record whose id (an integer ``key``) or file name (or its last part) is ``key``.

    Raises:
        MaskgenError: no such image, or the file name is ambiguous.
    """
    if key.strip().lstrip("-").isdigit():
        for rec in dataset.images:
            if rec.id == int(key):
                return rec
    hits = [rec for rec in dataset.images if rec.file_name == key]
    if not hits:
        hits = [rec for rec in dataset.images if Path(rec.file_name).name == key]
    if len(hits) > 1:
        raise MaskgenError(
            f"--image {key}: {len(hits)} images of {masks_path} have that file name; give the id"
        )
    if not hits:
        raise MaskgenError(f"--image {key}: no image with that id or file name in {masks_path}")
    return hits[0]


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a non-folder, or a non-empty folder without ``--force``."""
    if out.exists() and not out.is_dir():
        raise MaskgenError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MaskgenError(f"{out}: already exists; pass --force to overwrite it")


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Draw the outline of ``mask`` (``H x W`` bool, canvas size) onto ``canvas`` in place."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, 1)


def before_after(
    image: np.ndarray, edited: np.ndarray, erased: np.ndarray, revealed_parts: np.ndarray
) -> np.ndarray:
    """Side-by-side figure: input with erased instances outlined | edited, revealed parts outlined.

    Args:
        image, edited: ``H x W x 3`` uint8.
        erased: ``E x H x W`` bool visible masks of the erased instances.
        revealed_parts: ``M x H x W`` bool revealed pixels given to each remaining instance.

    Returns:
        ``h x (2 w + gap) x 3`` uint8, enlarged by an integer factor when ``H`` is small.
    """
    s = max(1, -(-MIN_FIGURE_HEIGHT // image.shape[0]))

    def up(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, s, axis=-2), s, axis=-1) if a.ndim == 3 else a

    def up_img(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.repeat(np.repeat(a, s, axis=0), s, axis=1))

    left, right = up_img(image), up_img(edited)
    for m in up(erased):
        _outline(left, m, ERASED_COLOUR)
    for m in up(revealed_parts):
        if m.any():
            _outline(right, m, REVEALED_COLOUR)
    gap = np.full((left.shape[0], 4 * s if s < 4 else 8, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def _resolve_ops(args: argparse.Namespace, ids: list[int], rec: Any) -> list[tuple[str, list[int]]]:
    """Operations as ``(name, [index, ...args])`` with instance indices; checks them all first.

    Raises:
        MaskgenError: no operation, an unknown or already erased id, or nothing left.
    """
    ops = getattr(args, "ops", None) or []
    if not ops:
        raise MaskgenError(
            "amodal edit: no operation; give --erase, --move, --front, --back, --sample "
            "or --reshape"
        )
    where = f"image id {rec.id} ({rec.file_name}) in {args.masks}"
    erased: set[int] = set()
    out = []
    for flag, values in ops:
        if flag == "--reshape":
            values = list(_reshape_values(values[0], rec, args))
        targets = list(dict.fromkeys(values)) if flag == "--erase" else values[:1]
        for a in targets:
            if a not in ids:
                raise MaskgenError(
                    f"{flag} {a}: annotation {a} is not an instance of {where}; "
                    f"its instances are {ids}"
                )
            if a in erased:
                raise MaskgenError(f"{flag} {a}: annotation {a} is erased by an earlier --erase")
        if flag == "--erase":
            erased.update(targets)
            out += [("erase", [ids.index(a)]) for a in targets]
        elif flag == "--sample" and values[1] < 0:
            raise MaskgenError(f"--sample {values[0]} {values[1]}: K must be 0 or more")
        else:
            out.append((flag.lstrip("-"), [ids.index(values[0]), *values[1:]]))
    if len(erased) == len(ids):
        raise MaskgenError(
            f"--erase {' '.join(map(str, sorted(erased)))}: erases every instance of image id "
            f"{rec.id} ({rec.file_name}); at least one must remain"
        )
    return out


def _reshape_values(text: str, rec: Any, args: argparse.Namespace) -> tuple[int, Any, Any]:
    """``(annotation id, spec, mask or None)`` of a ``--reshape`` value, its mask file read and
    checked against the image's size."""
    from maskgen.editing.reshape import parse_spec, read_user_mask

    ann, spec = parse_spec(text)
    mask = None
    if spec.kind == "mask":
        mask = read_user_mask(spec.value, (int(rec.height), int(rec.width)), f"--reshape {text}")
    return ann, spec, mask


def load_synth(name: str, texture: Any = None) -> Any:
    """The synthesizer named by ``--synth`` (``builtin`` or a model folder), with the texture
    settings ``texture`` (a :class:`~maskgen.synthesis.transfer.TextureOptions`; None: defaults).

    Raises:
        MaskgenError: no such folder, or no synthesizer in this installation.
    """
    try:
        from maskgen.synthesis import load_synthesizer
    except ImportError:
        raise MaskgenError(
            f"--synth {name}: this installation has no mask-conditioned synthesizer"
        ) from None
    if name not in ("builtin", "") and not Path(name).is_dir():
        raise MaskgenError(f"--synth {name}: no such model folder (or use 'builtin')")
    return load_synthesizer(None if name == "builtin" else name, texture=texture)


def _apply(
    scene: Any, ops: list[tuple[str, list[Any]]], synth: Any = None, predictor: Any = None
) -> list[dict[str, Any]]:
    """Run the operations; the ``--reshape`` ones' ``{id, spec, method}``."""
    reshaped = []
    for name, v in ops:
        if name == "reshape":
            what = v[2] if v[2] is not None else v[1]
            method = scene.reshape(v[0], what, synthesizer=synth, predictor=predictor)
            reshaped.append({"id": scene.ids[v[0]], "spec": str(v[1]), "method": method})
        elif name == "erase":
            scene.erase(v[0])
        elif name == "move":
            scene.move(v[0], v[1], v[2])
        elif name == "front":
            scene.bring_to_front(v[0])
        elif name == "back":
            scene.send_back(v[0])
        else:
            scene.use_sample(v[0], v[1])
    return reshaped


def run_edit(args: argparse.Namespace) -> int:
    from maskgen.amodal.completion import check_images, decode_visible
    from maskgen.amodal.predictor import AmodalPredictor
    from maskgen.core.io import read_image, write_image
    from maskgen.data.loader import load_dataset
    from maskgen.data.types import Dataset
    from maskgen.editing.scene import Scene
    from maskgen.engine import config_from_args, config_to_dict
    from maskgen.synthesis.transfer import TextureOptions

    check_model_arg(args.model)
    texture = config_from_args(TextureOptions, args)
    out = Path(args.out)
    check_out_dir(out, args.force)
    layers_dir = Path(args.layers) if args.layers else None
    if layers_dir is not None:
        check_out_dir(layers_dir, args.force)
    inpainter = make_inpainter(args.inpainter, args.device)
    dataset = load_dataset(args.masks)
    rec = find_image(dataset, args.image, args.masks)
    ids = [int(inst.id) for inst in rec.instances]
    ops = _resolve_ops(args, ids, rec)
    # Only this image is read: check just its file (exists, size as the JSON says).
    check_images(Dataset(images=[rec], categories=dataset.categories), args.images, args.masks)
    image = read_image(Path(args.images) / rec.file_name)
    try:
        vm, _ = decode_visible(rec)
    except ValueError as e:
        raise MaskgenError(f"{args.masks}: image id {rec.id}: {e}") from None
    synth = None
    if any(n == "reshape" and not v[1].rigid for n, v in ops):
        synth = load_synth(args.synth, texture)
    predictor = AmodalPredictor.from_folder(
        args.model, device=args.device, refit=refit_from_args(args)
    )
    n_samples = max([v[1] + 1 for n, v in ops if n == "sample"], default=0)
    n_samples = max(
        [n_samples] + [v[1].value + 1 for n, v in ops if n == "reshape" and v[1].kind == "sample"]
    )
    scene = Scene.from_image(
        image, vm, predictor, inpainter, labels=[int(i.category_id) for i in rec.instances],
        ids=ids, samples=n_samples,
    )  # fmt: skip
    before_vis, before_owner = scene.visible_masks(), scene.owner()
    reshaped = _apply(scene, ops, synth, predictor)
    edited, new_vis = scene.render(), scene.visible_masks()
    changed = scene.owner() != before_owner  # pixels that show another instance or background
    touched = sorted({v[0] for _, v in ops})
    entries = _entries(rec, scene, before_vis, new_vis)
    info = _edit_info(args, predictor, rec, ops, ids, n_samples, int(changed.sum()))
    if reshaped:
        info["edit"]["reshape"] = reshaped
        info["edit"]["synthesizer"] = args.synth if synth is not None else None
        if synth is not None:
            info["edit"]["synthesizer_texture"] = config_to_dict(texture)
    out.mkdir(parents=True, exist_ok=True)
    write_image(out / "edited.png", edited)
    gained = new_vis & ~before_vis
    write_image(out / "before_after.png", before_after(image, edited, before_vis[touched], gained))
    from maskgen.data.results import write_results

    write_results(out / "masks.json", entries, info)
    if layers_dir is not None:
        scene.save_layers(layers_dir)
    print(
        f"{len(ops)} operation(s) on {rec.file_name}: {int(changed.sum())} pixels revealed "
        f"or covered, {int(gained.sum())} newly visible object pixels -> {out}"
    )
    return 0


def _edit_info(
    args: argparse.Namespace, predictor: Any, rec: Any, ops: list, ids: list[int], n_samples: int,
    changed: int,
) -> dict[str, Any]:  # fmt: skip
    """The ``info`` of ``masks.json``: the completion protocol plus what the edit did."""
    from maskgen.amodal.completion import protocol_info

    info = protocol_info(
        predictor, masks_path=str(args.masks), restrict=True, box_mode="predicted",
        samples=n_samples, seed=0,
    )  # fmt: skip
    info["edit"] = {
        "image_id": int(rec.id),
        "file_name": rec.file_name,
        "operations": [[f, *map(_jsonable, v)] for f, v in args.ops],
        "erased": [ids[v[0]] for n, v in ops if n == "erase"],
        "revealed_pixels": changed,  # pixels that now show something else
        "order": "re-composited back to front from layers in the estimated occlusion order",
        "inpainting": args.inpainter,
        "segmentation": "amodal mask; visible_segmentation: the new visible mask",
    }
    return info


def _jsonable(v: Any) -> Any:
    return v if isinstance(v, (int, float, str)) else str(v)


def _entries(rec: Any, scene: Any, before_vis: np.ndarray, new_vis: np.ndarray) -> list[dict]:
    """``masks.json`` entries of the instances still in the scene, in input order."""
    from maskgen.core.rle import encode_rle
    from maskgen.data.results import result_annotation

    amodal = scene.amodal_masks()
    entries = []
    for k, inst in enumerate(rec.instances):
        if scene.layers[k].erased:
            continue
        e = result_annotation(int(inst.id), int(rec.id), int(inst.category_id), amodal[k])
        e["visible_segmentation"] = encode_rle(new_vis[k])
        e["revealed_area"] = int((new_vis[k] & ~before_vis[k]).sum())
        entries.append(e)
    return entries
